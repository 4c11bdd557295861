"""Claims: which class and provisioner a PVC belongs to (SPEC §2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storkcore import annotations as ann
from storkcore import objects
from storkcore.cluster import ClusterState


def storage_class_of(cluster: ClusterState, pvc: Any) -> dict | None:
    """The claim's StorageClass: the named one, the default when the field is absent,
    none when it is the empty string ("no class")."""
    spec = objects.mapping(pvc, "spec")
    if "storageClassName" in spec and spec["storageClassName"] is not None:
        class_name = spec["storageClassName"]
        return cluster.storage_class(class_name) if isinstance(class_name, str) and class_name else None
    # The beta annotation predates the field and still works on old claims.
    legacy = objects.annotations(pvc).get("volume.beta.kubernetes.io/storage-class")
    if isinstance(legacy, str) and legacy:
        return cluster.storage_class(legacy)
    return cluster.default_storage_class()


def provisioner_of(cluster: ClusterState, pvc: Any) -> str:
    """First hit wins: the provisioner annotations, the StorageClass, then the bound PV."""
    notes = objects.annotations(pvc)
    for key in (ann.STORAGE_PROVISIONER, ann.BETA_STORAGE_PROVISIONER):
        value = notes.get(key)
        if isinstance(value, str) and value:
            return value
    sc = storage_class_of(cluster, pvc)
    if sc is not None and objects.text(sc, "provisioner"):
        return objects.text(sc, "provisioner")
    pv = bound_pv(cluster, pvc)
    if pv is not None:
        return objects.text(pv, "spec", "csi", "driver") or objects.text(objects.annotations(pv), ann.PROVISIONED_BY)
    return ""


def bound_pv(cluster: ClusterState, pvc: Any) -> dict | None:
    volume_name = objects.text(pvc, "spec", "volumeName")
    return cluster.pv(volume_name) if volume_name else None


def is_pending(pvc: Any) -> bool:
    return objects.text(pvc, "status", "phase") in ("", "Pending") and not objects.text(pvc, "spec", "volumeName")


def waits_for_first_consumer(cluster: ClusterState, pvc: Any) -> bool:
    sc = storage_class_of(cluster, pvc)
    return sc is not None and objects.text(sc, "volumeBindingMode") == "WaitForFirstConsumer"


def volume_labels(sc: Any, pvc: Any) -> dict[str, str]:
    """A volume's labels: StorageClass parameters, then the claim's labels and annotations."""
    merged: dict[str, str] = {}
    for source in (objects.mapping(sc, "parameters"), objects.labels(pvc), objects.annotations(pvc)):
        merged.update(_strings(source))
    return merged


def claim_id(pvc: Any) -> str:
    return f"{objects.namespace(pvc)}/{objects.name(pvc)}"


def is_windows_fs(sc: Any, pv: Any) -> bool:
    """NTFS-formatted volumes are served to Windows nodes, which no locality rule covers."""
    fs = (
        objects.text(pv, "spec", "csi", "fsType")
        or objects.text(objects.mapping(sc, "parameters"), "csi.storage.k8s.io/fstype")
        or objects.text(objects.mapping(sc, "parameters"), "fsType")
    )
    return fs.lower() == "ntfs"


def _strings(source: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in source.items() if isinstance(k, str) and isinstance(v, str)}
