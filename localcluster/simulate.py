"""Cluster contents the harness writes: simulated nodes, Longhorn's objects, bound volumes.

Longhorn's objects are shaped as Longhorn's manager writes them (`longhorn.io/v1beta2`:
a Volume, its Replicas with `spec.nodeID`/`spec.healthyAt`, Nodes with Ready and disk
conditions in their status subresource), so the `longhorn` driver reads exactly what
it would read on a real cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from storkcore.drivers.longhorn import PROVISIONER as LONGHORN
from storkcore.drivers.longhorn import longhorn_resources
from storkcore.kube import CRDS, DEPLOYMENTS, NAMESPACES, NODES, PVCS, PVS, STORAGE_CLASSES, ApiError, Kube, Resource

LONGHORN_NAMESPACE = "longhorn-system"
LH = longhorn_resources(LONGHORN_NAMESPACE)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_namespace(kube: Kube, name: str, labels: Mapping[str, str] | None = None) -> None:
    # Kubernetes 1.21+ labels every namespace with its name; 1.20 does not, so we do.
    body = {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}}}
    try:
        kube.create(NAMESPACES, "", {"apiVersion": "v1", "kind": "Namespace", **body})
    except ApiError as err:
        if err.status != 409:
            raise
        kube.patch(NAMESPACES, "", name, body)


def add_node(
    kube: Kube,
    name: str,
    labels: Mapping[str, str],
    internal_ip: str,
    cpu: str = "16",
    memory: str = "64Gi",
    pods: str = "250",
) -> None:
    """A Node as a kubelet would register it, then marked Ready with its taints cleared."""
    kube.create(
        NODES,
        "",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **labels},
            },
        },
    )
    set_node_ready(kube, name, True, internal_ip, cpu, memory, pods)
    # TaintNodesByCondition taints new nodes not-ready; without the node lifecycle
    # controller nobody removes it.
    kube.patch(NODES, "", name, {"spec": {"taints": None}})


def set_node_ready(
    kube: Kube,
    name: str,
    ready: bool,
    internal_ip: str | None = None,
    cpu: str = "16",
    memory: str = "64Gi",
    pods: str = "250",
) -> None:
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "lastHeartbeatTime": now(),
                "lastTransitionTime": now(),
            }
        ],
        "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
        "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
    }
    if internal_ip:
        status["addresses"] = [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}]
    kube.patch(NODES, "", name, {"status": status}, subresource="status")


def install_longhorn_crds(kube: Kube) -> None:
    ensure_namespace(kube, LONGHORN_NAMESPACE)
    for kind, plural, short in (("Volume", "volumes", "lhv"), ("Replica", "replicas", "lhr"), ("Node", "nodes", "lhn")):
        body = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.longhorn.io"},
            "spec": {
                "group": "longhorn.io",
                "names": {
                    "kind": kind,
                    "listKind": f"{kind}List",
                    "plural": plural,
                    "singular": kind.lower(),
                    "shortNames": [short],
                },
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1beta2",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                ],
            },
        }
        try:
            kube.create(CRDS, "", body)
        except ApiError as err:
            if err.status != 409:
                raise
    for plural in ("volumes", "replicas", "nodes"):
        _wait_for_crd(kube, LH[plural])


def _wait_for_crd(kube: Kube, resource: Resource) -> None:
    from localcluster.processes import wait_until

    wait_until(lambda: kube.list(resource) is not None, 30, f"CRD {resource}")


def _condition(kind: str, ok: bool, reason: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": "" if ok else reason,
        "message": "",
        "lastProbeTime": "",
        "lastTransitionTime": now(),
    }


def _create_with_status(kube: Kube, resource: Resource, body: dict[str, Any], status: dict[str, Any]) -> None:
    created = kube.create(resource, LONGHORN_NAMESPACE, body)
    kube.patch(resource, LONGHORN_NAMESPACE, created["metadata"]["name"], {"status": status}, subresource="status")


def longhorn_node_status(ready: bool = True, disk_ready: bool = True, zone: str = "", region: str = "") -> dict:
    reason = "" if ready else "KubernetesNodeNotReady"
    return {
        "conditions": [_condition("Ready", ready, reason), _condition("Schedulable", True)],
        "diskStatus": {
            "default-disk": {
                "conditions": [
                    _condition("Ready", disk_ready, "DiskNotReady"),
                    _condition("Schedulable", disk_ready, "DiskNotReady"),
                ],
                "storageMaximum": 107374182400,
                "storageAvailable": 96636764160,
                "storageScheduled": 0,
                "diskUUID": "00000000-0000-0000-0000-000000000000",
                "diskType": "filesystem",
            }
        },
        "zone": zone,
        "region": region,
    }


def add_longhorn_node(kube: Kube, name: str, zone: str = "", region: str = "") -> None:
    body = {
        "apiVersion": "longhorn.io/v1beta2",
        "kind": "Node",
        "metadata": {"name": name, "namespace": LONGHORN_NAMESPACE},
        "spec": {
            "name": name,
            "allowScheduling": True,
            "disks": {
                "default-disk": {
                    "path": "/var/lib/longhorn/",
                    "allowScheduling": True,
                    "diskType": "filesystem",
                    "storageReserved": 0,
                    "tags": [],
                }
            },
            "tags": [],
        },
    }
    _create_with_status(kube, LH["nodes"], body, longhorn_node_status(zone=zone, region=region))


def set_longhorn_node(kube: Kube, name: str, ready: bool = True, disk_ready: bool = True) -> None:
    current = kube.get(LH["nodes"], LONGHORN_NAMESPACE, name) or {}
    status = current.get("status") or {}
    fresh = longhorn_node_status(ready, disk_ready, status.get("zone", ""), status.get("region", ""))
    kube.patch(LH["nodes"], LONGHORN_NAMESPACE, name, {"status": fresh}, subresource="status")


def add_longhorn_volume(
    kube: Kube, name: str, replica_nodes: Iterable[str], access_mode: str = "rwo", size: int = 2147483648
) -> None:
    nodes = list(replica_nodes)
    body = {
        "apiVersion": "longhorn.io/v1beta2",
        "kind": "Volume",
        "metadata": {"name": name, "namespace": LONGHORN_NAMESPACE},
        "spec": {
            "size": str(size),
            "numberOfReplicas": len(nodes),
            "accessMode": access_mode,
            "frontend": "blockdev",
            "dataLocality": "disabled",
            "migratable": False,
            "dataEngine": "v1",
        },
    }
    _create_with_status(kube, LH["volumes"], body, {"state": "detached", "robustness": "unknown", "currentNodeID": ""})
    for i, node in enumerate(nodes):
        replica = {
            "apiVersion": "longhorn.io/v1beta2",
            "kind": "Replica",
            "metadata": {
                "name": f"{name}-r-{i:02d}",
                "namespace": LONGHORN_NAMESPACE,
                "labels": {"longhornvolume": name, "longhornnode": node},
            },
            "spec": {
                "volumeName": name,
                "volumeSize": str(size),
                "nodeID": node,
                "diskID": "00000000-0000-0000-0000-000000000000",
                "diskPath": "/var/lib/longhorn/",
                "dataDirectoryName": f"{name}-{i:02d}",
                "healthyAt": now(),
                "failedAt": "",
                "active": True,
                "dataEngine": "v1",
            },
        }
        _create_with_status(kube, LH["replicas"], replica, {"currentState": "stopped", "started": False})


def longhorn_class(kube: Kube, name: str = "longhorn", wait_for_consumer: bool = False) -> None:
    storage_class(kube, name, LONGHORN, {"numberOfReplicas": "2", "staleReplicaTimeout": "30"}, wait_for_consumer)


def storage_class(
    kube: Kube,
    name: str,
    provisioner: str,
    parameters: Mapping[str, str] | None = None,
    wait_for_consumer: bool = False,
) -> None:
    kube.create(
        STORAGE_CLASSES,
        "",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": provisioner,
            "parameters": dict(parameters or {}),
            "volumeBindingMode": "WaitForFirstConsumer" if wait_for_consumer else "Immediate",
            "reclaimPolicy": "Retain",
        },
    )


def bound_claim(
    kube: Kube,
    namespace: str,
    claim: str,
    storage_class_name: str,
    pv_source: Mapping[str, Any],
    node_affinity: Mapping[str, Any] | None = None,
    size: str = "2Gi",
) -> str:
    """A PV pre-bound to a claim, as a provisioner would leave them; the PV controller binds them."""
    pv_name = f"pv-{namespace}-{claim}"
    pv_spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": storage_class_name,
        "claimRef": {"namespace": namespace, "name": claim},
        **pv_source,
    }
    if node_affinity is not None:
        pv_spec["nodeAffinity"] = {"required": node_affinity}
    kube.create(
        PVS, "", {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name}, "spec": pv_spec}
    )
    kube.create(
        PVCS,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class_name,
                "volumeName": pv_name,
                "resources": {"requests": {"storage": size}},
            },
        },
    )
    return pv_name


def longhorn_claim(kube: Kube, namespace: str, claim: str, volume: str, storage_class_name: str = "longhorn") -> str:
    return bound_claim(
        kube,
        namespace,
        claim,
        storage_class_name,
        {"csi": {"driver": LONGHORN, "volumeHandle": volume, "fsType": "ext4"}},
    )


def hostname_affinity(*nodes: str) -> dict[str, Any]:
    return {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": list(nodes)}]}
        ]
    }


def pod_template(claims: Iterable[str], annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A pod that mounts the given claims (pods never run here: there are no kubelets)."""
    return {
        "metadata": {"labels": {}, "annotations": dict(annotations or {})},
        "spec": {
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
            "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)],
            "terminationGracePeriodSeconds": 0,
        },
    }


def deployment(
    kube: Kube, namespace: str, name: str, claims: Iterable[str], annotations: Mapping[str, str] | None = None
) -> None:
    """A one-replica Deployment with no schedulerName: the webhook decides."""
    template = pod_template(claims, annotations)
    template["metadata"]["labels"] = {"app": name}
    kube.create(
        DEPLOYMENTS,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
        },
    )


def replica_nodes(kube: Kube) -> dict[str, list[str]]:
    """Longhorn volume name -> the nodes of its replicas."""
    found: dict[str, list[str]] = {}
    for replica in kube.list(LH["replicas"])[0]:
        spec = replica.get("spec") or {}
        found.setdefault(spec.get("volumeName", ""), []).append(spec.get("nodeID", ""))
    return found


def wait_bound_claim(kube: Kube, namespace: str, claim: str, timeout: float = 60) -> None:
    """The PV controller binds a pre-bound claim within a second or two. Creating its
    pods after that spares them the scheduler's retry back-off."""
    from localcluster.processes import wait_until

    wait_until(
        lambda: ((kube.get(PVCS, namespace, claim) or {}).get("status") or {}).get("phase") == "Bound",
        timeout,
        f"PVC {namespace}/{claim} to be Bound",
    )
