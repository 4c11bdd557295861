"""The nodes of one scheduling request, as `storkcore.nodetable` Candidates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extender.protocol import ExtenderArgs
from storkcore.drivers.base import Driver
from storkcore.nodetable import Candidate, NodeTable


class CandidateResolver:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.table = NodeTable(driver)

    def resolve(self, args: ExtenderArgs) -> list[Candidate]:
        entries = self.table.current()
        if args.node_names is not None:
            found = list(map(entries.get, args.node_names))  # in C: thousands of names per request
            if None in found:
                found = [c or self._not_cached(n) for c, n in zip(found, args.node_names, strict=True)]
            return found  # type: ignore[return-value]
        return [self._from_request(node, entries) for node in args.nodes or []]

    def _not_cached(self, node_name: str) -> Candidate:
        """A node the watch has not brought yet (just registered): one direct read."""
        return self._fresh(node_name, self.driver.cluster.node(node_name))

    def _from_request(self, node: dict, entries: Mapping[str, Candidate]) -> Candidate:
        """Nodes mode: the scheduler's object; our entry serves while it is the same version."""
        node_name = node["metadata"]["name"]
        known = entries.get(node_name)
        if known is not None and _resource_version(known.node) == _resource_version(node) != "":
            return known
        return self._fresh(node_name, node)

    def _fresh(self, node_name: str, node: Mapping[str, Any] | None) -> Candidate:
        storage = self.driver.index().match(node) if node is not None else None
        return Candidate(node_name, node, storage, self.driver.name)


def _resource_version(node: Mapping[str, Any] | None) -> str:
    metadata = node.get("metadata") if isinstance(node, Mapping) else None
    version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
    return version if isinstance(version, str) else ""
