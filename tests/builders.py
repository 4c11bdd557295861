"""Builders for wire-format Kubernetes and Longhorn objects, as the API serves them."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from storkcore.cluster import ClusterState
from storkcore.drivers import DriverOptions, make_driver
from storkcore.drivers.base import Driver
from storkcore.drivers.longhorn import PROVISIONER as LONGHORN
from storkcore.drivers.longhorn import longhorn_resources
from storkcore.kube import CSI_NODES, NODES, PODS, PVCS, PVS, STORAGE_CLASSES

LH_NS = "longhorn-system"
_versions = itertools.count(1)


def _rv() -> str:
    return str(next(_versions))


def meta(name: str, namespace: str = "", labels=None, annotations=None) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "resourceVersion": _rv(), "uid": f"uid-{name}"}
    if namespace:
        found["namespace"] = namespace
    if labels:
        found["labels"] = dict(labels)
    if annotations:
        found["annotations"] = dict(annotations)
    return found


def k8s_node(
    name: str,
    ready: bool = True,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    internal_ips: Iterable[str] = (),
    hostnames: Iterable[str] = (),
    external_ips: Iterable[str] = (),
) -> dict[str, Any]:
    addresses = (
        [{"type": "InternalIP", "address": a} for a in internal_ips]
        + [{"type": "ExternalIP", "address": a} for a in external_ips]
        + [{"type": "Hostname", "address": a} for a in hostnames]
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(name, labels={"kubernetes.io/hostname": name, **(labels or {})}, annotations=annotations),
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "addresses": addresses,
        },
    }


def topology_labels(zone: str = "", region: str = "", rack: str = "") -> dict[str, str]:
    found = {}
    if zone:
        found["topology.kubernetes.io/zone"] = zone
    if region:
        found["topology.kubernetes.io/region"] = region
    if rack:
        found["stork.libopenstorage.org/rack"] = rack
    return found


def storage_class(
    name: str,
    provisioner: str,
    default: bool = False,
    wait_for_consumer: bool = False,
    parameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    notes = {"storageclass.kubernetes.io/is-default-class": "true"} if default else None
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": meta(name, annotations=notes),
        "provisioner": provisioner,
        "parameters": dict(parameters or {}),
        "volumeBindingMode": "WaitForFirstConsumer" if wait_for_consumer else "Immediate",
    }


_NO_CLASS = object()


def pvc(
    name: str,
    namespace: str = "default",
    storage_class_name: Any = "longhorn",
    volume: str | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A claim; bound to PV `volume` when given, else Pending. Pass _NO_CLASS to omit the class."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"]}
    if storage_class_name is not _NO_CLASS:
        spec["storageClassName"] = storage_class_name
    if volume:
        spec["volumeName"] = volume
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(name, namespace, labels=labels, annotations=annotations),
        "spec": spec,
        "status": {"phase": "Bound" if volume else "Pending"},
    }


def pv(
    name: str,
    csi_driver: str | None = LONGHORN,
    handle: str | None = None,
    node_affinity: dict | None = None,
    local_path: str | None = None,
    annotations: Mapping[str, str] | None = None,
    fs_type: str = "",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if csi_driver:
        spec["csi"] = {"driver": csi_driver, "volumeHandle": handle or name}
        if fs_type:
            spec["csi"]["fsType"] = fs_type
    if local_path:
        spec["local"] = {"path": local_path}
    if node_affinity is not None:
        spec["nodeAffinity"] = {"required": node_affinity}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": meta(name, annotations=annotations),
        "spec": spec,
    }


def hostname_affinity(*nodes: str) -> dict[str, Any]:
    return {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": list(nodes)}]}
        ]
    }


def csinode(name: str, drivers: Iterable[str]) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": meta(name),
        "spec": {"drivers": [{"name": d, "nodeID": name} for d in drivers]},
    }


def lh_volume(name: str, access_mode: str = "rwo", migratable: bool = False, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "longhorn.io/v1beta2",
        "kind": "Volume",
        "metadata": meta(name, LH_NS),
        "spec": {
            "accessMode": access_mode,
            "migratable": migratable,
            "numberOfReplicas": replicas,
            "frontend": "blockdev",
        },
        "status": {"state": "detached", "robustness": "unknown"},
    }


def lh_replica(name: str, volume: str, node: str, healthy: bool = True, failed: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "longhorn.io/v1beta2",
        "kind": "Replica",
        "metadata": meta(name, LH_NS, labels={"longhornvolume": volume, "longhornnode": node}),
        "spec": {
            "volumeName": volume,
            "nodeID": node,
            "diskID": f"disk-{node}",
            "healthyAt": "2026-11-01T00:00:00Z" if healthy else "",
            "failedAt": "2026-11-02T00:00:00Z" if failed else "",
            "active": True,
        },
        "status": {"currentState": "stopped" if failed else "running"},
    }


def lh_node(
    name: str,
    ready: bool = True,
    disk_ready: bool = True,
    disk_schedulable: bool = True,
    zone: str = "",
    region: str = "",
) -> dict[str, Any]:
    def cond(kind: str, ok: bool) -> dict[str, str]:
        return {"type": kind, "status": "True" if ok else "False", "reason": "" if ok else "Test"}

    return {
        "apiVersion": "longhorn.io/v1beta2",
        "kind": "Node",
        "metadata": meta(name, LH_NS),
        "spec": {"name": name, "allowScheduling": True, "disks": {"default-disk": {"path": "/var/lib/longhorn"}}},
        "status": {
            "conditions": [cond("Ready", ready), cond("Schedulable", True)],
            "diskStatus": {
                "default-disk": {"conditions": [cond("Ready", disk_ready), cond("Schedulable", disk_schedulable)]}
            },
            "zone": zone,
            "region": region,
        },
    }


def pod(
    name: str,
    claims: Iterable[str] = (),
    namespace: str = "default",
    annotations: Mapping[str, str] | None = None,
    scheduler: str | None = None,
    node: str | None = None,
    phase: str = "Pending",
    ephemeral: Mapping[str, str] | None = None,  # volume name -> storage class
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
    ]
    for volume_name, class_name in (ephemeral or {}).items():
        volumes.append(
            {
                "name": volume_name,
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": class_name,
                            "resources": {"requests": {"storage": "1Gi"}},
                        }
                    }
                },
            }
        )
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox"}], "volumes": volumes}
    if scheduler is not None:
        spec["schedulerName"] = scheduler
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, namespace, annotations=annotations),
        "spec": spec,
        "status": {"phase": phase},
    }


class World:
    """In-memory cluster state plus a driver over it."""

    def __init__(
        self, driver: str = "longhorn", csi_names: Iterable[str] = ("csi.example.com",), **options: Any
    ) -> None:
        self.cluster = ClusterState()
        self.options = DriverOptions(csi_driver_names=tuple(csi_names), longhorn_namespace=LH_NS, **options)
        self.lh = longhorn_resources(LH_NS)
        self.driver: Driver = make_driver(driver, self.cluster, self.options)

    def add(self, *objs: dict[str, Any]) -> World:
        kinds = {
            "Node": NODES,
            "PersistentVolumeClaim": PVCS,
            "PersistentVolume": PVS,
            "StorageClass": STORAGE_CLASSES,
            "CSINode": CSI_NODES,
            "Pod": PODS,
        }
        for obj in objs:
            if obj["apiVersion"].startswith("longhorn.io/"):
                resource = self.lh[obj["kind"].lower() + "s"]
            else:
                resource = kinds[obj["kind"]]
            self.cluster.store(resource).upsert(obj)
        return self

    def remove(self, obj: dict[str, Any]) -> None:
        for store in [self.cluster.store(r) for r in (NODES, PVCS, PVS, STORAGE_CLASSES, CSI_NODES, PODS)] + [
            self.cluster.store(r) for r in self.lh.values()
        ]:
            if store.get(obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) is obj:
                store.delete(obj)


def longhorn_world(
    nodes: Mapping[str, Mapping[str, str]],
    volumes: Mapping[str, Iterable[str]],
    storage_down: Iterable[str] = (),
    offline: Iterable[str] = (),
    access_modes: Mapping[str, str] | None = None,
    class_params: Mapping[str, str] | None = None,
) -> World:
    """Nodes (name -> topology labels), and Longhorn volumes (volume -> replica nodes),
    each with a bound claim `pvc-<volume>` in `default`."""
    world = World("longhorn")
    world.add(storage_class("longhorn", LONGHORN, parameters=class_params))
    for node_name, node_labels in nodes.items():
        world.add(
            k8s_node(node_name, labels=node_labels, internal_ips=[f"10.0.0.{len(world.cluster.store(NODES)) + 1}"])
        )
        world.add(lh_node(node_name, ready=node_name not in offline, disk_ready=node_name not in storage_down))
    for volume, replica_nodes in volumes.items():
        world.add(lh_volume(volume, access_mode=(access_modes or {}).get(volume, "rwo")))
        world.add(pv(volume), pvc(f"pvc-{volume}", volume=volume))
        for i, node_name in enumerate(replica_nodes):
            world.add(lh_replica(f"{volume}-r{i}", volume, node_name))
    return world


def csi_world(
    nodes: Mapping[str, Mapping[str, str]],
    volumes: Mapping[str, Iterable[str]],
    offline: Iterable[str] = (),
    driver_name: str = "csi.example.com",
) -> World:
    """The same shape for the csi driver: data nodes through PV node affinity."""
    world = World("csi", csi_names=(driver_name,))
    world.add(storage_class("fast", driver_name))
    for node_name, node_labels in nodes.items():
        world.add(k8s_node(node_name, ready=node_name not in offline, labels=node_labels))
        world.add(csinode(node_name, [driver_name]))
    for volume, data_nodes in volumes.items():
        world.add(
            pv(volume, csi_driver=driver_name, node_affinity=hostname_affinity(*data_nodes)),
            pvc(f"pvc-{volume}", storage_class_name="fast", volume=volume),
        )
    return world
