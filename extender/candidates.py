"""The nodes a scheduling request is about, with their storage nodes attached.

Matching a Kubernetes node to a storage node costs a few lookups; at thousands
of nodes per request that adds up, so each node's match is remembered until
the node (its resourceVersion) or the driver's nodes change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extender.protocol import ExtenderArgs
from storkcore import objects
from storkcore.drivers.base import Driver
from storkcore.model import StorageNode


@dataclass(frozen=True)
class Candidate:
    name: str
    node: Mapping[str, Any] | None  # None: unknown to the cache and the API
    storage: StorageNode | None  # None: not a storage node of the driver


class CandidateResolver:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        # node name -> (resourceVersion, driver index version, storage node)
        self._memo: dict[str, tuple[str, tuple[int, ...], StorageNode | None]] = {}

    def resolve(self, args: ExtenderArgs) -> list[Candidate]:
        index = self.driver.index()
        version = self.driver.index_version()
        if args.node_names is not None:
            cluster = self.driver.cluster
            pairs = [(n, cluster.node(n)) for n in args.node_names]
        else:
            pairs = [(objects.name(n), n) for n in args.nodes or []]
        memo = self._memo
        found: list[Candidate] = []
        for node_name, node in pairs:
            if node is None:
                found.append(Candidate(node_name, None, None))
                continue
            rv = objects.text(node, "metadata", "resourceVersion")
            hit = memo.get(node_name)
            if hit is not None and rv and hit[0] == rv and hit[1] == version:
                storage = hit[2]
            else:
                storage = index.match(node)
                memo[node_name] = (rv, version, storage)
            found.append(Candidate(node_name, node, storage))
        if len(memo) > 2 * max(len(pairs), len(index), 1000):
            memo.clear()  # forget nodes that left the cluster
        return found
