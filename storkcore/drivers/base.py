"""The driver interface (SPEC §2) and what every driver shares."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from storkcore import claims, objects
from storkcore.cache import Store
from storkcore.cluster import ClusterState
from storkcore.kube import NODES, Resource
from storkcore.matching import NodeIndex, TopologyLabels
from storkcore.model import StorageNode, Volume

NO_PROVISIONER = "kubernetes.io/no-provisioner"


@dataclass(frozen=True)
class DriverOptions:
    csi_driver_names: tuple[str, ...] = ()
    longhorn_namespace: str = "longhorn-system"
    topology: TopologyLabels = field(default_factory=TopologyLabels)


class Driver(ABC):
    """Answers the storage model's questions from cached cluster state."""

    name: ClassVar[str]

    def __init__(self, cluster: ClusterState, options: DriverOptions) -> None:
        self.cluster = cluster
        self.options = options
        self._index_lock = threading.Lock()
        self._index_memo: tuple[tuple[int, ...], NodeIndex] | None = None

    # -- ownership ---------------------------------------------------------

    @property
    @abstractmethod
    def provisioners(self) -> frozenset[str]:
        """Provisioner names whose claims this driver owns."""

    def owns(self, pvc: Any) -> bool:
        return claims.provisioner_of(self.cluster, pvc) in self.provisioners

    def owns_class(self, storage_class: Any) -> bool:
        return objects.text(storage_class, "provisioner") in self.provisioners

    # -- volumes -----------------------------------------------------------

    @abstractmethod
    def volume(self, pvc: Any) -> Volume | None:
        """The volume behind a bound claim; None while the claim is not bound.

        Raises DriverError when the driver's own state cannot answer.
        """

    # -- nodes -------------------------------------------------------------

    @abstractmethod
    def _node_sources(self) -> Sequence[Store]:
        """The stores storage nodes are derived from (their versions key the memo)."""

    @abstractmethod
    def _build_nodes(self) -> Iterable[StorageNode]:
        """Every storage node, from cached state."""

    @abstractmethod
    def _fresh_node(self, storage_id: str) -> StorageNode | None:
        """One storage node read straight from the API (or the stores, in memory)."""

    def index(self) -> NodeIndex:
        """Storage nodes indexed for matching; rebuilt only when a source changed."""
        key = tuple(s.version for s in self._node_sources())
        memo = self._index_memo
        if memo is not None and memo[0] == key:
            return memo[1]
        with self._index_lock:
            if self._index_memo is None or self._index_memo[0] != key:
                self._index_memo = (key, NodeIndex(self._build_nodes()))
            return self._index_memo[1]

    def index_version(self) -> tuple[int, ...]:
        """Changes whenever `index()` may give a different answer."""
        return tuple(s.version for s in self._node_sources())

    def nodes(self) -> list[StorageNode]:
        return list(self.index().by_id.values())

    def node(self, storage_id: str) -> StorageNode | None:
        """One node, fresh: used by the health monitor right before it acts."""
        return self._fresh_node(storage_id)

    # -- helpers for drivers ------------------------------------------------

    def fresh(self, resource: Resource, namespace: str, name: str) -> dict | None:
        """A direct read when connected to an API, else the store's copy."""
        if self.cluster.kube is not None:
            return self.cluster.kube.get(resource, namespace, name)
        return self.cluster.store(resource).get(namespace, name)

    def k8s_node(self, name: str) -> dict | None:
        return self.cluster.store(NODES).get("", name)
