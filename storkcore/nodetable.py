"""Every cached Kubernetes node with the facts that do not depend on a pod.

Matching a Kubernetes node to a storage node and reading its annotations cost
microseconds; at thousands of nodes per request that adds up. `NodeTable`
keeps those facts for every cached node and patches them as nodes and storage
nodes change (from the stores' and the driver's change logs). The extender
looks candidates up in it; the webhook asks it which Kubernetes nodes hold a
volume's replicas.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from storkcore import annotations as ann
from storkcore import objects
from storkcore.drivers.base import Driver
from storkcore.kube import NODES
from storkcore.matching import NodeIndex
from storkcore.model import USABLE, NodeStatus, StorageNode, Topology


class Place:
    """A storage node's status and topology: what its score depends on when it holds no replica.

    One shared instance per distinct place (`place_of`), so that a request groups
    thousands of nodes by identity, without hashing or comparing their fields.
    """

    __slots__ = ("status", "topology")

    def __init__(self, status: NodeStatus | None, topology: Topology) -> None:
        self.status = status
        self.topology = topology


NOWHERE = Place(None, Topology())  # a node that is not a storage node of the driver
_PLACES: dict[tuple[NodeStatus, Topology], Place] = {}  # a few per cluster: statuses x racks


def place_of(storage: StorageNode | None) -> Place:
    if storage is None:
        return NOWHERE
    key = (storage.status, storage.topology)
    found = _PLACES.get(key)
    return found if found is not None else _PLACES.setdefault(key, Place(*key))


class Candidate:
    """One node of a request, with the facts that do not depend on the pod."""

    __slots__ = (
        "name",
        "node",
        "node_reason",
        "place",
        "static_reason",
        "storage",
        "storage_id",
        "storage_reason",
    )

    def __init__(self, name: str, node: Mapping[str, Any] | None, storage: StorageNode | None, driver: str) -> None:
        self.name = name
        self.node = node  # None: unknown to the cache and the API
        self.storage = storage  # None: not a storage node of the driver
        self.storage_id = storage.storage_id if storage is not None else ""
        # Filter step 4: why the node itself is excluded ("" when it is not).
        self.node_reason = _node_reason(node)
        # Filter step 5: why the node cannot reach driver storage ("" when it can).
        self.storage_reason = _storage_reason(storage, driver)
        self.static_reason = self.node_reason or self.storage_reason
        self.place = place_of(storage)  # nodes in one place score alike when they hold no replica


def _node_reason(node: Mapping[str, Any] | None) -> str:
    if node is None:
        return "node not found"
    if ann.is_true(objects.annotations(node).get(ann.NODE_UNSCHEDULABLE)):
        return f"node is marked {ann.NODE_UNSCHEDULABLE}"
    return ""


def _storage_reason(storage: StorageNode | None, driver: str) -> str:
    if storage is None:
        return f"node is not a {driver} storage node"
    if storage.status not in USABLE:
        return f"{driver} storage on node is {storage.status.value}"
    return ""


class NodeTable:
    """A Candidate for every cached Kubernetes node, kept current lazily."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.store = driver.cluster.store(NODES)
        self._entries: dict[str, Candidate] = {}
        self._by_storage: dict[str, set[str]] = {}  # storage id -> Kubernetes node names matched to it
        self._places: dict[str, Place] = {}  # Kubernetes node name -> its candidate's place
        self._reasons: dict[str, str] = {}  # Kubernetes node name -> its candidate's static_reason
        self._seen = (-1, -1)  # (node store version, driver generation) the entries reflect
        self._lock = threading.Lock()

    def current(self) -> Mapping[str, Candidate]:
        if (self.store.version, self.driver.generation) != self._seen:
            self._catch_up()
        return self._entries

    def _catch_up(self) -> None:
        with self._lock:
            seen_nodes, seen_generation = self._seen
            target = (self.store.version, self.driver.generation)
            node_keys = self.store.changed_since(seen_nodes) if seen_nodes >= 0 else None
            storage = self.driver.changed_since(seen_generation) if seen_generation >= 0 else None
            if node_keys is None or storage is None or storage[1]:
                self._rebuild()
            else:
                names = {name for _, name in node_keys}
                for storage_id in storage[0]:
                    names |= self._by_storage.get(storage_id, set())
                index = self.driver.index()
                for node_name in names:
                    self._update(node_name, index)
            self._seen = target

    def places(self, names: list[str], storage_ids: Iterable[str]) -> tuple[list[Place | Candidate], list[Candidate]]:
        """Each name's place, but the Candidate itself for the nodes of `storage_ids`; and those Candidates.

        One C-level pass over the names, so that a prioritize request need not touch each
        candidate. A name the table does not hold gives None.
        """
        self.current()
        with self._lock:  # no catch-up half done: the places and the nodes of storage_ids agree
            lookup: dict[str, Place | Candidate] = self._places.copy()
            holders = [self._entries[n] for sid in set(storage_ids) for n in self._by_storage.get(sid, ())]
        lookup.update((c.name, c) for c in holders)
        return list(map(lookup.get, names)), holders  # type: ignore[arg-type]

    def static_reasons(self, names: list[str]) -> list[str | None]:
        """Each name's `static_reason` ("" for a node that may host driver storage), None when not cached."""
        self.current()
        return list(map(self._reasons.get, names))

    def _rebuild(self) -> None:
        index = self.driver.index()
        entries: dict[str, Candidate] = {}
        by_storage: dict[str, set[str]] = {}
        for node in self.store.list():
            candidate = self._candidate(objects.name(node), node, index)
            entries[candidate.name] = candidate
            if candidate.storage is not None:
                by_storage.setdefault(candidate.storage.storage_id, set()).add(candidate.name)
        self._entries, self._by_storage = entries, by_storage
        self._places = {name: c.place for name, c in entries.items()}
        self._reasons = {name: c.static_reason for name, c in entries.items()}

    def _update(self, node_name: str, index: NodeIndex) -> None:
        previous = self._entries.get(node_name)
        if previous is not None and previous.storage is not None:
            self._by_storage.get(previous.storage.storage_id, set()).discard(node_name)
        node = self.store.get("", node_name)
        if node is None:
            self._entries.pop(node_name, None)
            self._places.pop(node_name, None)
            self._reasons.pop(node_name, None)
            return
        candidate = self._candidate(node_name, node, index)
        self._entries[node_name] = candidate
        self._places[node_name] = candidate.place
        self._reasons[node_name] = candidate.static_reason
        if candidate.storage is not None:
            self._by_storage.setdefault(candidate.storage.storage_id, set()).add(node_name)

    def _candidate(self, node_name: str, node: Mapping[str, Any] | None, index: NodeIndex) -> Candidate:
        storage = index.match(node) if node is not None else None
        return Candidate(node_name, node, storage, self.driver.name)

    def nodes_of(self, storage_id: str) -> list[Candidate]:
        """The Kubernetes nodes matched to one storage node (usually one)."""
        self.current()
        with self._lock:
            return [self._entries[n] for n in self._by_storage.get(storage_id, ())]
