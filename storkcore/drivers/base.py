"""The driver interface (SPEC §2) and what every driver shares."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from storkcore import claims, objects
from storkcore.cache import Store
from storkcore.cluster import ClusterState
from storkcore.kube import Resource
from storkcore.matching import NodeIndex, TopologyLabels
from storkcore.model import StorageNode, Volume

NO_PROVISIONER = "kubernetes.io/no-provisioner"


@dataclass(frozen=True)
class DriverOptions:
    csi_driver_names: tuple[str, ...] = ()
    longhorn_namespace: str = "longhorn-system"
    topology: TopologyLabels = field(default_factory=TopologyLabels)
    # Drivers over an external storage API (pxd, linstor):
    storage_budget: float = 2.0  # longest a request may wait for the storage API (s)
    api_timeout: float = 10.0  # background calls (s)
    node_refresh_interval: float = 10.0
    volume_refresh_interval: float = 30.0
    px_endpoint: str = ""  # URL; empty: PX_ENDPOINT/PX_API_PORT, then the portworx-service Service
    px_ca_file: str = ""
    px_shared_secret: str = ""  # empty: env PX_SHARED_SECRET
    px_jwt_issuer: str = ""  # empty: env PX_JWT_ISSUER, else stork.openstorage.io
    linstor_controllers: str = ""  # comma-separated URLs; empty: http://linstor-controller:3370
    linstor_client_cert: str = ""
    linstor_client_key: str = ""
    linstor_ca_file: str = ""


def _identity(node: StorageNode) -> tuple:
    """The fields node matching uses; a change in them can change every match."""
    return (node.storage_id, node.scheduler_id, node.hostname, node.ips)


class Driver(ABC):
    """Answers the storage model's questions from cached cluster state.

    Storage nodes are derived per source object name (a storage node `X` from
    the objects named `X` in the driver's source stores) and kept current by
    store listeners, so a node heartbeat costs one node's work, not a rebuild.
    `generation` counts changes and `changed_since` names them, for callers
    that keep tables derived from storage nodes.
    """

    name: ClassVar[str]
    LOG_SIZE = 8192

    def __init__(self, cluster: ClusterState, options: DriverOptions) -> None:
        self.cluster = cluster
        self.options = options
        self.generation = 0
        self._nodes: dict[str, StorageNode] = {}  # by source object name
        self._index: NodeIndex | None = None
        self._nodes_lock = threading.RLock()
        self._node_log: deque[tuple[int, str, bool]] = deque()  # (generation, storage id, structural)
        self._log_floor = 0

    def _track_nodes(self) -> None:
        """Subclasses call this once their stores are set up."""
        for store in self._node_sources():
            store.add_listener(self._on_source_change)
        for source_name in self._source_names():
            self._refresh(source_name)

    # -- lifecycle (drivers with background work override these) --------------

    def start(self) -> None:  # noqa: B027 (most drivers have no background work)
        """Start background work; called once the cluster caches are started."""

    def stop(self) -> None:  # noqa: B027
        """Stop background work."""

    def ready(self) -> bool:
        """Whether the driver can answer (for /readyz, together with the caches)."""
        return True

    def wait_ready(self, timeout: float) -> bool:
        """Wait until ready (at most timeout seconds); whether it is."""
        return self.ready()

    def state_version(self) -> tuple[int, ...]:
        """Changes to what the driver answers from, beyond the cluster's stores."""
        return (self.generation,)

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

    def cached_volume(self, pvc: Any) -> Volume | None:
        """`volume`, but never waiting for a storage API: drivers over one raise DriverError
        while the volume is not in memory yet (and load it in the background)."""
        return self.volume(pvc)

    # -- nodes: what a driver provides ---------------------------------------

    @abstractmethod
    def _node_sources(self) -> Sequence[Store]:
        """Stores whose object named X feeds storage node X."""

    @abstractmethod
    def _source_names(self) -> Iterable[str]:
        """Every name that may be a storage node (the primary source's objects)."""

    @abstractmethod
    def _derive_node(self, source_name: str) -> StorageNode | None:
        """Storage node X from cached objects named X; None when there is none."""

    @abstractmethod
    def _fresh_node(self, storage_id: str) -> StorageNode | None:
        """One storage node read straight from the API (or the stores, in memory)."""

    # -- nodes: what callers use ---------------------------------------------

    def index(self) -> NodeIndex:
        """Storage nodes indexed for matching."""
        index = self._index
        if index is not None:
            return index
        with self._nodes_lock:
            if self._index is None:
                self._index = NodeIndex(self._nodes.values())
            return self._index

    def nodes(self) -> list[StorageNode]:
        with self._nodes_lock:
            return list(self._nodes.values())

    def node(self, storage_id: str) -> StorageNode | None:
        """One node, fresh: used by the health monitor right before it acts."""
        return self._fresh_node(storage_id)

    def changed_since(self, generation: int) -> tuple[set[str], bool] | None:
        """Storage ids changed after `generation`, and whether any change could alter
        node matching (a node added, removed, or renamed); None when too old to tell."""
        with self._nodes_lock:
            if generation == self.generation:
                return set(), False
            if not self._log_floor <= generation < self.generation:
                return None
            changes = [(sid, structural) for g, sid, structural in self._node_log if g > generation]
        return {sid for sid, _ in changes}, any(structural for _, structural in changes)

    def _on_source_change(self, old: dict | None, new: dict | None) -> None:
        self._refresh(objects.name(new if new is not None else old))

    def _refresh(self, source_name: str) -> None:
        with self._nodes_lock:
            node = self._derive_node(source_name)
            previous = self._nodes.get(source_name)
            if node == previous:
                return
            if node is None:
                del self._nodes[source_name]
            else:
                self._nodes[source_name] = node
            structural = previous is None or node is None or _identity(previous) != _identity(node)
            if structural:
                self._index = None  # rebuilt on next use
            elif self._index is not None and previous is not None and node is not None:
                self._index.replace(previous, node)
            self.generation += 1
            for changed in {n.storage_id for n in (previous, node) if n is not None}:
                self._node_log.append((self.generation, changed, structural))
            while len(self._node_log) > self.LOG_SIZE:
                self._log_floor = self._node_log.popleft()[0]

    # -- helpers for drivers ------------------------------------------------

    def fresh(self, resource: Resource, namespace: str, name: str) -> dict | None:
        """A direct read when connected to an API, else the store's copy."""
        if self.cluster.kube is not None:
            return self.cluster.kube.get(resource, namespace, name)
        return self.cluster.store(resource).get(namespace, name)
