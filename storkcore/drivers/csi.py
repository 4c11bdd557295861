"""`csi`: the generic topology driver for CSI drivers and Kubernetes local volumes.

A volume's data nodes are the Kubernetes nodes that satisfy its PV's node
affinity; storage nodes are the Kubernetes nodes themselves, Online when Ready
and the CSI driver is registered on them (readiness alone for local PVs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from storkcore import claims, objects
from storkcore.cache import Store
from storkcore.cluster import ClusterState
from storkcore.drivers.base import NO_PROVISIONER, Driver, DriverOptions
from storkcore.kube import CSI_NODES, NODES
from storkcore.model import NodeStatus, StorageNode, Volume
from storkcore.selectors import node_matches_selector


class CsiDriver(Driver):
    name = "csi"

    def __init__(self, cluster: ClusterState, options: DriverOptions) -> None:
        super().__init__(cluster, options)
        if not options.csi_driver_names:
            raise ValueError("the csi driver needs at least one --csi-driver-name")
        self._names = frozenset(options.csi_driver_names)
        self._csi_names = self._names - {NO_PROVISIONER}
        self._k8s_nodes = cluster.store(NODES)
        self._csi_nodes = cluster.store(CSI_NODES)
        # PV name -> ((pv resourceVersion, nodes version), data nodes)
        self._affinity_memo: dict[str, tuple[tuple[str, int], tuple[str, ...]]] = {}
        self._track_nodes()

    @property
    def provisioners(self) -> frozenset[str]:
        return self._names

    def volume(self, pvc: Any) -> Volume | None:
        pv = claims.bound_pv(self.cluster, pvc)
        if pv is None:
            return None
        sc = claims.storage_class_of(self.cluster, pvc)
        return Volume(
            id=objects.text(pv, "spec", "csi", "volumeHandle") or objects.name(pv),
            claim=claims.claim_id(pvc),
            data_nodes=self._data_nodes(pv),
            labels=claims.volume_labels(sc, pvc),
            windows=claims.is_windows_fs(sc, pv),
        )

    def _data_nodes(self, pv: dict) -> tuple[str, ...]:
        """Nodes allowed by the PV's required node affinity; none when it has no affinity."""
        selector = objects.dig(pv, "spec", "nodeAffinity", "required")
        if selector is None:
            return ()
        key = (objects.text(pv, "metadata", "resourceVersion"), self._k8s_nodes.version)
        memo = self._affinity_memo.get(objects.name(pv))
        if memo is not None and memo[0] == key:
            return memo[1]
        found = tuple(sorted(objects.name(n) for n in self._k8s_nodes.list() if node_matches_selector(n, selector)))
        self._affinity_memo[objects.name(pv)] = (key, found)
        return found

    def _node_sources(self) -> Sequence[Store]:
        return (self._k8s_nodes, self._csi_nodes)

    def _source_names(self) -> Iterable[str]:
        return [objects.name(n) for n in self._k8s_nodes.list()]

    def _derive_node(self, source_name: str) -> StorageNode | None:
        node = self._k8s_nodes.get("", source_name)
        if node is None:
            return None
        return self._storage_node(node, self._csi_nodes.get("", source_name))

    def _fresh_node(self, storage_id: str) -> StorageNode | None:
        node = self.fresh(NODES, "", storage_id)
        if node is None:
            return None
        return self._storage_node(node, self.fresh(CSI_NODES, "", storage_id))

    def _storage_node(self, node: dict, csi_node: dict | None) -> StorageNode:
        node_name = objects.name(node)
        hostnames = objects.node_addresses(node, "Hostname")
        return StorageNode(
            storage_id=node_name,
            scheduler_id=node_name,
            hostname=hostnames[0] if hostnames else node_name,
            status=self._status(node, csi_node),
            ips=tuple(objects.node_addresses(node, "InternalIP")),
            topology=self.options.topology.of(node),
        )

    def _status(self, node: dict, csi_node: dict | None) -> NodeStatus:
        if not objects.node_is_ready(node):
            return NodeStatus.OFFLINE
        if NO_PROVISIONER in self._names or not self._csi_names:
            return NodeStatus.ONLINE  # local volumes need nothing but the node
        registered = {objects.text(d, "name") for d in objects.items(csi_node, "spec", "drivers")}
        return NodeStatus.ONLINE if registered & self._csi_names else NodeStatus.OFFLINE
