"""One way per driver to build the same storage layout, for the driver conformance suite.

A backend turns "these nodes (with topology labels), these volumes on these
nodes, these nodes StorageDown or Offline, these volumes shared over the
network" into a World whose driver reads it from its own source: Longhorn
objects and CSI node affinity in memory, the simulated Portworx and LINSTOR
servers over HTTP. A layout a storage system cannot express names the reason,
and the scenario is skipped with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from localcluster.simulated_linstor import SimulatedLinstor
from localcluster.simulated_portworx import SimulatedPortworx
from storkcore.drivers.external import ExternalDriver
from storkcore.drivers.linstor import PROVISIONER as LINSTOR
from tests.builders import World, csi_world, k8s_node, longhorn_world, meta, pvc, storage_class

# How the storage system names a Kubernetes node, for the node-matching scenarios.
IDENTITIES = ("name", "hostname", "short", "ip")


def internal_ip(index: int) -> str:
    return f"10.0.0.{index + 1}"


class Backend:
    name = ""
    cannot: Mapping[str, str] = {}  # feature -> why this storage system cannot express it

    def world(
        self,
        nodes: Mapping[str, Mapping[str, str]],
        volumes: Mapping[str, Iterable[str]],
        storage_down: Iterable[str] = (),
        offline: Iterable[str] = (),
        shared: Iterable[str] = (),
        identity: str = "name",
        labels_on: str = "both",
    ) -> World:
        """`labels_on`: where the nodes' topology labels go: "both", "kubernetes" (the
        Kubernetes nodes only) or "storage" (the storage system's nodes only)."""
        raise NotImplementedError

    def set_replicas(self, world: World, volume: str, nodes: list[str]) -> None:
        raise NotImplementedError

    def forget_volume(self, world: World, volume: str) -> None:
        """The storage system no longer knows the volume (its PV and claim stay)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def labels_for(labels_on: str, where: str, labels: Mapping[str, str]) -> Mapping[str, str]:
    """The labels a node gets on one side ("kubernetes" or "storage")."""
    return labels if labels_on in ("both", where) else {}


class LonghornBackend(Backend):
    name = "longhorn"
    cannot = {
        "identity": "Longhorn names its nodes after the Kubernetes node",
        "rack_on_storage": "a Longhorn node has a zone and a region (copied from the node) but no rack",
    }

    def world(self, nodes, volumes, storage_down=(), offline=(), shared=(), identity="name", labels_on="both"):
        from tests.builders import lh_node

        modes = {v: "rwx" for v in shared}
        k8s_side = {n: labels_for(labels_on, "kubernetes", labels) for n, labels in nodes.items()}
        world = longhorn_world(k8s_side, volumes, storage_down=storage_down, offline=offline, access_modes=modes)
        if labels_on == "storage":  # Longhorn's status copies of zone and region, the node unlabelled
            for n, labels in nodes.items():
                world.add(
                    lh_node(
                        n,
                        ready=n not in offline,
                        disk_ready=n not in storage_down,
                        zone=labels.get("topology.kubernetes.io/zone", ""),
                        region=labels.get("topology.kubernetes.io/region", ""),
                    )
                )
        return world

    def set_replicas(self, world, volume, nodes):
        from tests.builders import lh_replica

        for replica in [
            r for r in world.cluster.store(world.lh["replicas"]).list() if r["spec"]["volumeName"] == volume
        ]:
            world.remove(replica)
        for i, node in enumerate(nodes):
            world.add(lh_replica(f"{volume}-moved-r{i}", volume, node))

    def forget_volume(self, world, volume):
        world.remove(world.cluster.store(world.lh["volumes"]).get("longhorn-system", volume))


class CsiBackend(Backend):
    name = "csi"
    cannot = {
        "storage_down": "a CSI node is Ready with the driver registered, or not: there is no StorageDown",
        "shared": "the csi driver serves no volume over the network",
        "identity": "the csi driver's storage nodes are the Kubernetes nodes",
        "unknown_volume": "the PV is the volume: there is no storage system that could forget it",
        "labels_on_storage": "the csi driver's storage nodes are the Kubernetes nodes: no labels of their own",
    }

    def world(self, nodes, volumes, storage_down=(), offline=(), shared=(), identity="name", labels_on="both"):
        return csi_world(nodes, volumes, offline=offline)

    def set_replicas(self, world, volume, nodes):
        from tests.builders import hostname_affinity, pv

        world.add(pv(volume, csi_driver="csi.example.com", node_affinity=hostname_affinity(*nodes)))


class _ExternalBackend(Backend):
    """Kubernetes objects in memory; the storage system behind a simulated server."""

    provisioner = ""

    def __init__(self, **options: Any) -> None:
        self.servers: list[Any] = []
        self.options = {"storage_budget": 2.0, **options}  # DriverOptions fields

    def close(self) -> None:
        for server in self.servers:
            server.stop()

    def _k8s(
        self,
        world: World,
        nodes: Mapping[str, Mapping[str, str]],
        volumes: Mapping[str, Iterable[str]],
        labels_on: str = "both",
    ) -> None:
        world.add(storage_class("fast", self.provisioner))
        for i, (node_name, labels) in enumerate(nodes.items()):
            k8s_labels = labels_for(labels_on, "kubernetes", labels)
            world.add(k8s_node(node_name, labels=k8s_labels, internal_ips=[internal_ip(i)]))
        for volume in volumes:
            world.add(self.pv(volume), pvc(f"pvc-{volume}", storage_class_name="fast", volume=volume))

    def pv(self, volume: str) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def storage_name(node: str, index: int, identity: str) -> tuple[str, str, str]:
        """(storage id, hostname or scheduler name, ip) for a node under an identity scheme."""
        elsewhere = f"192.0.2.{100 + index}"  # TEST-NET-1: no Kubernetes node has it
        return {
            "name": (node, node, internal_ip(index)),  # the scheduler name is the node name
            "hostname": (f"storage-{index}", node, elsewhere),  # only the hostname equals the node name
            "short": (f"storage-{index}", f"{node}.cluster.example", elsewhere),  # the node name is its short form
            "ip": (f"storage-{index}", "", internal_ip(index)),  # only the InternalIP matches
        }[identity]

    endpoint_option = ""  # the DriverOptions field that names the server

    def new_server(self) -> Any:
        raise NotImplementedError

    def add_storage_node(
        self, server: Any, node_name: str, index: int, labels: Mapping[str, str], identity: str,
        storage_down: bool, offline: bool,
    ) -> str:  # fmt: skip
        """Adds the storage node for a Kubernetes node; returns its storage id."""
        raise NotImplementedError

    def add_storage_volume(self, server: Any, volume: str, holders: list[str], shared: bool) -> None:
        raise NotImplementedError

    def world(self, nodes, volumes, storage_down=(), offline=(), shared=(), identity="name", labels_on="both"):
        server = self.new_server().start()
        self.servers.append(server)
        self.ids = {
            node_name: self.add_storage_node(
                server,
                node_name,
                i,
                labels_for(labels_on, "storage", labels),
                identity,
                node_name in storage_down,
                node_name in offline,
            )
            for i, (node_name, labels) in enumerate(nodes.items())
        }
        for volume, holders in volumes.items():
            self.add_storage_volume(server, volume, [self.ids[h] for h in holders], volume in shared)
        world = World(self.name, **{self.endpoint_option: server.url}, **self.options)
        world.storage = server  # type: ignore[attr-defined]
        self._k8s(world, nodes, volumes, labels_on)
        self.sync(world)
        return world

    def set_replicas(self, world: World, volume: str, nodes: list[str]) -> None:
        world.storage.set_replicas(volume, [self.ids[n] for n in nodes])  # type: ignore[attr-defined]
        self.sync(world)

    @staticmethod
    def sync(world: World) -> None:
        driver = world.driver
        assert isinstance(driver, ExternalDriver)
        driver.refresh_now()


class PortworxBackend(_ExternalBackend):
    name = "pxd"
    provisioner = "pxd.portworx.com"
    endpoint_option = "px_endpoint"

    def new_server(self) -> SimulatedPortworx:
        return SimulatedPortworx()

    def add_storage_node(self, server, node_name, index, labels, identity, storage_down, offline) -> str:
        storage_id, host, ip = self.storage_name(node_name, index, identity)
        status = "STATUS_STORAGE_DOWN" if storage_down else "STATUS_OFFLINE" if offline else "STATUS_OK"
        scheduler = node_name if identity == "name" else ""
        server.add_node(storage_id, scheduler_name=scheduler, hostname=host, ip=ip, status=status, labels=labels)
        return storage_id

    def add_storage_volume(self, server, volume, holders, shared) -> None:
        server.add_volume(volume, holders, sharedv4=shared, service_type="CLUSTERIP" if shared else None)

    def pv(self, volume):
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": meta(volume),
            "spec": {"portworxVolume": {"volumeID": volume}},
        }

    def forget_volume(self, world, volume):
        world.storage.remove_volume(volume)  # type: ignore[attr-defined]
        self.sync(world)


class LinstorBackend(_ExternalBackend):
    name = "linstor"
    provisioner = LINSTOR
    endpoint_option = "linstor_controllers"
    cannot = {
        "storage_down": "a LINSTOR node is connected or not: there is no StorageDown",
        "shared": "LINSTOR volumes are block devices attached where the pod runs: no anti-hyperconvergence",
    }

    def new_server(self) -> SimulatedLinstor:
        return SimulatedLinstor()

    def add_storage_node(self, server, node_name, index, labels, identity, storage_down, offline) -> str:
        storage_id, host, ip = self.storage_name(node_name, index, identity)
        if identity in ("hostname", "short"):
            storage_id = host  # LINSTOR has one name per node: the host's
        k8s_hostname = node_name if identity == "name" else ""
        server.add_node(storage_id, ip=ip, k8s_hostname=k8s_hostname, labels=labels, online=not offline)
        return storage_id

    def add_storage_volume(self, server, volume, holders, shared) -> None:
        for holder in holders:
            server.add_resource(volume, holder)

    def pv(self, volume):
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": meta(volume),
            "spec": {"csi": {"driver": LINSTOR, "volumeHandle": volume}},
        }

    def forget_volume(self, world, volume):
        world.storage.remove_resource(volume)  # type: ignore[attr-defined]
        self.sync(world)


BACKENDS = {b.name: b for b in (LonghornBackend, CsiBackend, PortworxBackend, LinstorBackend)}
