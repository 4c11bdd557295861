"""`longhorn`: Longhorn volumes (`longhorn.io/v1beta2`).

Facts from Longhorn's API types that this follows:
- a PV provisioned by `driver.longhorn.io` names its Longhorn volume in
  `spec.csi.volumeHandle`;
- `replicas.longhorn.io` carry `spec.volumeName` and `spec.nodeID`; a replica is
  healthy when `spec.healthyAt` is set and `spec.failedAt` is empty;
- `nodes.longhorn.io` are named after the Kubernetes node; `status.conditions`
  holds `Ready`, and `status.diskStatus.<disk>.conditions` holds `Ready` and
  `Schedulable` for each disk;
- `volumes.longhorn.io` have `spec.accessMode` `rwo`, `rwop` or `rwx`; an `rwx`
  volume is served over NFS by a share manager (unless it is `migratable`, a
  block volume for live migration), so its pods gain nothing from locality.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from storkcore import claims, objects
from storkcore.cache import Store
from storkcore.cluster import ClusterState
from storkcore.drivers.base import Driver, DriverOptions
from storkcore.kube import NODES, Resource
from storkcore.model import DriverError, NodeStatus, StorageNode, Topology, Volume

PROVISIONER = "driver.longhorn.io"
GROUP, VERSION = "longhorn.io", "v1beta2"


def longhorn_resources(namespace: str) -> dict[str, Resource]:
    return {plural: Resource(GROUP, VERSION, plural, namespace) for plural in ("volumes", "replicas", "nodes")}


def replica_is_healthy(replica: Any) -> bool:
    spec = objects.mapping(replica, "spec")
    return bool(spec.get("nodeID")) and bool(spec.get("healthyAt")) and not spec.get("failedAt")


def longhorn_node_status(lh_node: Any) -> NodeStatus:
    if objects.condition_status(lh_node, "Ready") != "True":
        return NodeStatus.OFFLINE
    disks = objects.mapping(lh_node, "status", "diskStatus")
    for disk in disks.values():
        wrapped = {"status": disk}  # disk status has the same conditions shape as objects
        if (
            objects.condition_status(wrapped, "Ready") == "True"
            and objects.condition_status(wrapped, "Schedulable") == "True"
        ):
            return NodeStatus.ONLINE
    return NodeStatus.STORAGE_DOWN


class LonghornDriver(Driver):
    name = "longhorn"

    def __init__(self, cluster: ClusterState, options: DriverOptions) -> None:
        super().__init__(cluster, options)
        self.resources = longhorn_resources(options.longhorn_namespace)
        self._volumes = cluster.store(self.resources["volumes"])
        self._replicas = cluster.store(self.resources["replicas"])
        self._lh_nodes = cluster.store(self.resources["nodes"])
        self._k8s_nodes = cluster.store(NODES)
        # volume name -> replica name -> replica, kept current by a listener
        self._replicas_by_volume: dict[str, dict[str, dict]] = {}
        self._replica_lock = threading.Lock()
        self._replicas.add_listener(self._on_replica)
        for replica in self._replicas.list():
            self._on_replica(None, replica)
        self._track_nodes()

    @property
    def provisioners(self) -> frozenset[str]:
        return frozenset({PROVISIONER})

    def _on_replica(self, old: dict | None, new: dict | None) -> None:
        with self._replica_lock:
            if old is not None:
                by_name = self._replicas_by_volume.get(objects.text(old, "spec", "volumeName"), {})
                by_name.pop(objects.name(old), None)
            if new is not None:
                volume = objects.text(new, "spec", "volumeName")
                self._replicas_by_volume.setdefault(volume, {})[objects.name(new)] = new

    def volume(self, pvc: Any) -> Volume | None:
        pv = claims.bound_pv(self.cluster, pvc)
        if pv is None:
            return None
        handle = objects.text(pv, "spec", "csi", "volumeHandle") or objects.name(pv)
        lh_volume = self.cluster.get(self.resources["volumes"], self.options.longhorn_namespace, handle)
        if lh_volume is None:
            raise DriverError(f"Longhorn volume {handle} not found")
        sc = claims.storage_class_of(self.cluster, pvc)
        spec = objects.mapping(lh_volume, "spec")
        return Volume(
            id=handle,
            claim=claims.claim_id(pvc),
            data_nodes=self._healthy_replica_nodes(handle),
            labels=claims.volume_labels(sc, pvc),
            needs_anti_hyperconvergence=spec.get("accessMode") == "rwx" and not spec.get("migratable"),
            windows=claims.is_windows_fs(sc, pv),
        )

    def _healthy_replica_nodes(self, volume: str) -> tuple[str, ...]:
        with self._replica_lock:
            replicas = list(self._replicas_by_volume.get(volume, {}).values())
        return tuple(sorted({objects.text(r, "spec", "nodeID") for r in replicas if replica_is_healthy(r)}))

    def _node_sources(self) -> Sequence[Store]:
        return (self._lh_nodes, self._k8s_nodes)

    def _source_names(self) -> Iterable[str]:
        return [objects.name(n) for n in self._lh_nodes.list()]

    def _derive_node(self, source_name: str) -> StorageNode | None:
        lh_node = self._lh_nodes.get(self.options.longhorn_namespace, source_name)
        if lh_node is None:
            return None
        return self._storage_node(lh_node, self._k8s_nodes.get("", source_name))

    def _fresh_node(self, storage_id: str) -> StorageNode | None:
        lh_node = self.fresh(self.resources["nodes"], self.options.longhorn_namespace, storage_id)
        if lh_node is None:
            return None
        return self._storage_node(lh_node, self.fresh(NODES, "", storage_id))

    def _storage_node(self, lh_node: dict, k8s_node: Mapping[str, Any] | None) -> StorageNode:
        node_name = objects.name(lh_node)
        labelled = self.options.topology.of(k8s_node)
        # Longhorn copies zone and region from the node's labels into its status.
        topology = Topology(
            region=objects.text(lh_node, "status", "region") or labelled.region,
            zone=objects.text(lh_node, "status", "zone") or labelled.zone,
            rack=labelled.rack,
        )
        return StorageNode(
            storage_id=node_name,
            scheduler_id=node_name,
            hostname=node_name,
            status=longhorn_node_status(lh_node),
            ips=tuple(objects.node_addresses(k8s_node, "InternalIP")),
            topology=topology,
        )
