"""Matching Kubernetes nodes to driver storage nodes, and node topology (SPEC §2).

A Kubernetes node matches a storage node when:
1. the node name equals the storage node's scheduler id;
2. the storage id or hostname equals the node name or one of its Hostname
   addresses, or is the short form of it (`node1` ~ `node1.example.com`);
3. one of the node's InternalIP addresses is among the storage node's IPs.
ExternalIP is never used. `NodeIndex` answers this with a few dict lookups
instead of a scan, which matters at thousands of nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from storkcore import annotations as ann
from storkcore import objects
from storkcore.model import StorageNode, Topology


@dataclass(frozen=True)
class TopologyLabels:
    """Node label keys for each level; configurable, first present key wins."""

    zone: tuple[str, ...] = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
    region: tuple[str, ...] = (
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    )
    rack: tuple[str, ...] = (ann.RACK_LABEL,)

    def of(self, node: Any) -> Topology:
        node_labels = objects.labels(node)
        return Topology(
            region=_first(node_labels, self.region),
            zone=_first(node_labels, self.zone),
            rack=_first(node_labels, self.rack),
        )


def _first(source: Mapping[str, Any], keys: Iterable[str]) -> str:
    for k in keys:
        value = source.get(k)
        if isinstance(value, str) and value:
            return value
    return ""


def dotted_prefixes(name: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`]: the short forms of a name."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class NodeIndex:
    """Storage nodes, indexed for matching against Kubernetes nodes."""

    def __init__(self, nodes: Iterable[StorageNode]) -> None:
        self.by_id: dict[str, StorageNode] = {}
        self._by_scheduler_id: dict[str, StorageNode] = {}
        self._by_name: dict[str, StorageNode] = {}  # full storage id / hostname
        self._by_short_name: dict[str, StorageNode] = {}  # their dotted prefixes
        self._by_ip: dict[str, StorageNode] = {}
        for node in nodes:
            self.by_id[node.storage_id] = node
            if node.scheduler_id:
                self._by_scheduler_id.setdefault(node.scheduler_id, node)
            for known in {node.storage_id, node.hostname} - {""}:
                self._by_name.setdefault(known, node)
                for short in dotted_prefixes(known):
                    self._by_short_name.setdefault(short, node)
            for ip in node.ips:
                self._by_ip.setdefault(ip, node)

    def __len__(self) -> int:
        return len(self.by_id)

    def replace(self, old: StorageNode, new: StorageNode) -> None:
        """Swap in a new version of a node whose matching fields are unchanged."""
        names = {old.storage_id, old.hostname} - {""}
        keys = [old.storage_id, old.scheduler_id, *names, *(p for n in names for p in dotted_prefixes(n)), *old.ips]
        for table in (self.by_id, self._by_scheduler_id, self._by_name, self._by_short_name, self._by_ip):
            for key in keys:
                if table.get(key) is old:
                    table[key] = new

    def match(self, k8s_node: Any) -> StorageNode | None:
        """The storage node behind a Kubernetes node, or None when the driver does not know it."""
        node_name = objects.name(k8s_node)
        found = self._by_scheduler_id.get(node_name)
        if found is not None:
            return found
        for candidate in [node_name, *objects.node_addresses(k8s_node, "Hostname")]:
            if not candidate:
                continue
            # Equal, or the storage name is longer (`node1` vs `node1.example.com`) ...
            found = self._by_name.get(candidate) or self._by_short_name.get(candidate)
            if found is not None:
                return found
            # ... or the Kubernetes name is the longer one.
            for short in dotted_prefixes(candidate):
                found = self._by_name.get(short)
                if found is not None:
                    return found
        for ip in objects.node_addresses(k8s_node, "InternalIP"):
            found = self._by_ip.get(ip)
            if found is not None:
                return found
        return None
