"""SIMULATED CSI snapshots for the local cluster (tests and the playground only).

There is no CSI snapshot controller or CSI driver here, so this module stands in for both:
- `install_snapshot_crds` serves `snapshot.storage.k8s.io/v1` VolumeSnapshot,
  VolumeSnapshotContent and VolumeSnapshotClass (schemas written for this project, with the
  fields and status subresource the real CRDs have), plus stork's own Rule and
  GroupVolumeSnapshot CRDs from manifests/base;
- `SimulatedSnapshotter` behaves as the snapshot controller + driver pair does: for each new
  VolumeSnapshot it cuts (sets `status.creationTime`), binds a VolumeSnapshotContent, and marks
  both `readyToUse` after `ready_delay` seconds, so the cut and readiness are different
  moments, as with real uploads. `stall` leaves new snapshots uncut; `fail` sets `status.error`.

What a cut holds: for an in-tree `local` volume (the real node's volumes) the cut copies the
volume's folder, and the VolumeSnapshotContent's `status.snapshotHandle` is the absolute path of
that copy on this machine. A PVC whose `dataSource` is such a snapshot gets a new local PV
holding a copy of it (on the same node as the source). For simulated Longhorn volumes the cut
is instant and holds no data (the handle is `simulated-<uid>`), and they cannot be restored.
Deleting a VolumeSnapshot deletes its content and copy (deletionPolicy Delete; no finalizers).
A VolumeSnapshot naming a pre-provisioned VolumeSnapshotContent (`spec.source.snapshotHandle`,
its `volumeSnapshotRef` naming that snapshot) is bound to it and ready at once, as the snapshot
controller binds one whose handle the driver knows; a handle it does not know gets `status.error`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from localcluster.binaries import REPO
from localcluster.simulate import CRDS, _wait_for_crd
from storkcore import objects
from storkcore.kube import PVCS, PVS, ApiError, Kube
from storkcore.snapshots import (
    GROUP_SNAPSHOTS,
    RULES,
    SCHEDULE_POLICIES,
    SNAPSHOT_GROUP,
    SNAPSHOT_SCHEDULES,
    VOLUME_SNAPSHOT_CLASSES,
    VOLUME_SNAPSHOT_CONTENTS,
    VOLUME_SNAPSHOTS,
)

log = logging.getLogger(__name__)
SIMULATED_LOCAL_DRIVER = "kubernetes.io/no-provisioner"  # the class driver for the real node's local volumes


def _crd(kind: str, plural: str, scope: str, columns: list[dict[str, Any]], short: list[str]) -> dict[str, Any]:
    loose = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    }
    if kind == "VolumeSnapshotClass":  # its fields are top-level
        properties.update(
            driver={"type": "string"},
            deletionPolicy={"type": "string", "enum": ["Delete", "Retain"]},
            parameters={"type": "object", "additionalProperties": {"type": "string"}},
        )
    else:
        properties.update(spec=loose, status=loose)
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": properties}},
        "additionalPrinterColumns": columns,
    }
    if kind != "VolumeSnapshotClass":
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # A *.k8s.io group needs this annotation; "unapproved" says these are not the real CRDs.
        "metadata": {
            "name": f"{plural}.{SNAPSHOT_GROUP}",
            "annotations": {"api-approved.kubernetes.io": "unapproved, simulated by stork-py for local tests"},
        },
        "spec": {
            "group": SNAPSHOT_GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
            },
            "scope": scope,
            "versions": [version],
        },
    }


def _column(name: str, path: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path}


def snapshot_crds() -> list[dict[str, Any]]:
    age = _column("Age", ".metadata.creationTimestamp", "date")
    return [
        _crd(
            "VolumeSnapshot",
            "volumesnapshots",
            "Namespaced",
            [
                _column("ReadyToUse", ".status.readyToUse", "boolean"),
                _column("SourcePVC", ".spec.source.persistentVolumeClaimName"),
                _column("RestoreSize", ".status.restoreSize"),
                _column("SnapshotClass", ".spec.volumeSnapshotClassName"),
                _column("SnapshotContent", ".status.boundVolumeSnapshotContentName"),
                _column("CreationTime", ".status.creationTime", "date"),
                age,
            ],
            ["vs"],
        ),
        _crd(
            "VolumeSnapshotContent",
            "volumesnapshotcontents",
            "Cluster",
            [
                _column("ReadyToUse", ".status.readyToUse", "boolean"),
                _column("RestoreSize", ".status.restoreSize", "integer"),
                _column("DeletionPolicy", ".spec.deletionPolicy"),
                _column("Driver", ".spec.driver"),
                _column("VolumeSnapshot", ".spec.volumeSnapshotRef.name"),
                age,
            ],
            ["vsc"],
        ),
        _crd(
            "VolumeSnapshotClass",
            "volumesnapshotclasses",
            "Cluster",
            [_column("Driver", ".driver"), _column("DeletionPolicy", ".deletionPolicy"), age],
            ["vsclass"],
        ),
    ]


def install_snapshot_crds(kube: Kube) -> None:
    """The CSI snapshot CRDs and stork's own CRDs (as shipped in manifests/base)."""
    files = ("rule-crd.yaml", "groupvolumesnapshot-crd.yaml", "schedule-crds.yaml")
    shipped = [doc for f in files for doc in yaml.safe_load_all((REPO / "manifests" / "base" / f).read_text())]
    for body in [*snapshot_crds(), *shipped]:
        try:
            kube.create(CRDS, "", body)
        except ApiError as err:
            if err.status != 409:
                raise
    for resource in (
        VOLUME_SNAPSHOTS,
        VOLUME_SNAPSHOT_CONTENTS,
        VOLUME_SNAPSHOT_CLASSES,
        RULES,
        GROUP_SNAPSHOTS,
        SCHEDULE_POLICIES,
        SNAPSHOT_SCHEDULES,
    ):
        _wait_for_crd(kube, resource)


def snapshot_class(kube: Kube, name: str, driver: str, default: bool = True, parameters: dict | None = None) -> None:
    body = {
        "apiVersion": f"{SNAPSHOT_GROUP}/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {
            "name": name,
            "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true" if default else "false"},
        },
        "driver": driver,
        "deletionPolicy": "Delete",
        "parameters": dict(parameters or {}),
    }
    with contextlib.suppress(ApiError):  # already there
        kube.create(VOLUME_SNAPSHOT_CLASSES, "", body)


def _now(at: float | None = None) -> str:
    """A time (now by default) as the snapshot API writes it."""
    moment = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _size_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity or 0)


class SimulatedSnapshotter:
    """A simulated CSI snapshot controller and driver; state a test can change."""

    def __init__(self, kube: Kube, folder: Path, ready_delay: float = 1.0, cut_spacing: float = 0.05) -> None:
        self.kube = kube
        self.folder = folder
        self.ready_delay = ready_delay
        self.cut_spacing = cut_spacing  # a driver cuts volumes one after another, not all at once
        self.stall = False  # new snapshots are never cut
        self.fail = ""  # new snapshots get status.error with this message
        self.cuts: dict[str, float] = {}  # "namespace/name" -> when it was cut (epoch)
        # snapshot handle -> the source volume's node affinity: a local copy restores on its node
        self.node_affinity: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatedSnapshotter:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="simulated-snapshotter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # keep simulating; a test sees what did not happen
                log.exception("simulated snapshotter")
            self._stop.wait(0.1)

    def sync(self) -> None:
        snapshots = self.kube.list(VOLUME_SNAPSHOTS)[0]
        for snap in snapshots:
            self._sync_snapshot(snap)
        self._collect(snapshots)
        for pvc in self.kube.list(PVCS)[0]:
            self._sync_restore(pvc)

    # -- snapshots ---------------------------------------------------------------------------

    def _sync_snapshot(self, snap: dict[str, Any]) -> None:
        status = objects.mapping(snap, "status")
        key = "/".join(objects.key(snap))
        if status.get("error") or objects.dig(snap, "metadata", "deletionTimestamp"):
            return
        if objects.text(snap, "spec", "source", "volumeSnapshotContentName"):
            if not status.get("boundVolumeSnapshotContentName"):
                self._bind_preprovisioned(snap)
            return
        if not status.get("creationTime"):
            if self.fail:
                self._patch_snapshot(snap, {"readyToUse": False, "error": {"message": self.fail, "time": _now()}})
            elif not self.stall:
                self._cut(snap)
                time.sleep(self.cut_spacing)
            return
        if not status.get("readyToUse") and time.time() - self.cuts.get(key, 0) >= self.ready_delay:
            content = status.get("boundVolumeSnapshotContentName")
            with contextlib.suppress(ApiError):
                self.kube.patch(VOLUME_SNAPSHOT_CONTENTS, "", content, {"status": {"readyToUse": True}}, "status")
            self._patch_snapshot(snap, {"readyToUse": True})

    def _cut(self, snap: dict[str, Any]) -> None:
        namespace, name = objects.key(snap)
        pvc = self.kube.get(PVCS, namespace, objects.text(snap, "spec", "source", "persistentVolumeClaimName"))
        pv = self.kube.get(PVS, "", objects.text(pvc, "spec", "volumeName")) if pvc else None
        if pv is None:
            self._patch_snapshot(
                snap, {"readyToUse": False, "error": {"message": "source PVC is not bound", "time": _now()}}
            )
            return
        snapshot_class = self.kube.get(
            VOLUME_SNAPSHOT_CLASSES, "", objects.text(snap, "spec", "volumeSnapshotClassName")
        )
        content_name = f"snapcontent-{objects.text(snap, 'metadata', 'uid')}"
        local = objects.text(pv, "spec", "local", "path")
        handle = f"simulated-{objects.text(snap, 'metadata', 'uid')}"
        if local:
            copy = self.folder / content_name
            shutil.copytree(local, copy, symlinks=True)
            handle = str(copy.resolve())
            self.node_affinity[handle] = objects.mapping(pv, "spec", "nodeAffinity")
        cut_at = time.time()
        size = objects.text(pvc, "spec", "resources", "requests", "storage") or objects.text(
            pv, "spec", "capacity", "storage"
        )
        content = {
            "apiVersion": f"{SNAPSHOT_GROUP}/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": objects.text(snapshot_class, "deletionPolicy") or "Delete",
                "driver": objects.text(snapshot_class, "driver"),
                "source": {"volumeHandle": objects.text(pv, "spec", "csi", "volumeHandle") or local},
                "volumeSnapshotClassName": objects.name(snapshot_class),
                "volumeSnapshotRef": {
                    "apiVersion": f"{SNAPSHOT_GROUP}/v1",
                    "kind": "VolumeSnapshot",
                    "name": name,
                    "namespace": namespace,
                    "uid": objects.text(snap, "metadata", "uid"),
                },
            },
        }
        with contextlib.suppress(ApiError):
            self.kube.create(VOLUME_SNAPSHOT_CONTENTS, "", content)
        self.kube.patch(
            VOLUME_SNAPSHOT_CONTENTS,
            "",
            content_name,
            {
                "status": {
                    "creationTime": int(cut_at * 1e9),
                    "readyToUse": False,
                    "restoreSize": _size_bytes(size),
                    "snapshotHandle": handle,
                }
            },
            "status",
        )
        self.cuts[f"{namespace}/{name}"] = cut_at
        self._patch_snapshot(
            snap,
            {
                "boundVolumeSnapshotContentName": content_name,
                "creationTime": _now(),
                "readyToUse": False,
                "restoreSize": size,
            },
        )

    def _bind_preprovisioned(self, snap: dict[str, Any]) -> None:
        """A VolumeSnapshot naming an existing VolumeSnapshotContent (spec.source.snapshotHandle),
        as the snapshot controller binds one: only when the content's volumeSnapshotRef names this
        snapshot; the content's status comes from the driver's own record of the handle."""
        namespace, name = objects.key(snap)
        content_name = objects.text(snap, "spec", "source", "volumeSnapshotContentName")
        content = self.kube.get(VOLUME_SNAPSHOT_CONTENTS, "", content_name)
        if content is None:
            return  # the controller waits for the content
        ref = objects.mapping(content, "spec", "volumeSnapshotRef")
        if (ref.get("namespace"), ref.get("name")) != (namespace, name):
            self._patch_snapshot(
                snap,
                {"readyToUse": False, "error": {"message": f"VolumeSnapshotContent {content_name} is bound to "
                                                          "another snapshot", "time": _now()}},
            )  # fmt: skip
            return
        handle = objects.text(content, "spec", "source", "snapshotHandle")
        if not (handle.startswith("/") and Path(handle).is_dir()) and not handle.startswith("simulated-"):
            self._patch_snapshot(
                snap, {"readyToUse": False, "error": {"message": f"no snapshot {handle!r}", "time": _now()}}
            )
            return
        uid = objects.text(snap, "metadata", "uid")
        self.kube.patch(VOLUME_SNAPSHOT_CONTENTS, "", content_name, {"spec": {"volumeSnapshotRef": {"uid": uid}}})
        size, cut_at = self._recorded(handle)
        self.kube.patch(
            VOLUME_SNAPSHOT_CONTENTS,
            "",
            content_name,
            {"status": {"creationTime": int(cut_at * 1e9), "readyToUse": True, "restoreSize": size,
                        "snapshotHandle": handle}},
            "status",
        )  # fmt: skip
        self._patch_snapshot(
            snap,
            {
                "boundVolumeSnapshotContentName": content_name,
                "creationTime": _now(cut_at),
                "readyToUse": True,
                "restoreSize": str(size),
            },
        )

    def _source_affinity(self, snap: dict[str, Any]) -> dict[str, Any]:
        """The node affinity of the snapshot's source PV (for a copy cut before a restart)."""
        source = objects.text(snap, "spec", "source", "persistentVolumeClaimName")
        claim = self.kube.get(PVCS, objects.namespace(snap), source) if source else None
        volume = objects.text(claim, "spec", "volumeName")
        return objects.mapping(self.kube.get(PVS, "", volume), "spec", "nodeAffinity") if volume else {}

    def _recorded(self, handle: str) -> tuple[int, float]:
        """What the driver recorded when it cut `handle`: its size and when (from the content the
        cut made), as a driver answers ListSnapshots for a pre-provisioned content."""
        cut = [
            c
            for c in self.kube.list(VOLUME_SNAPSHOT_CONTENTS)[0]
            if objects.text(c, "status", "snapshotHandle") == handle and objects.dig(c, "status", "creationTime")
        ]
        size = max((int(objects.dig(c, "status", "restoreSize") or 0) for c in cut), default=0)
        at = min((int(objects.dig(c, "status", "creationTime")) for c in cut), default=int(time.time() * 1e9))
        return size, at / 1e9

    def _patch_snapshot(self, snap: dict[str, Any], status: dict[str, Any]) -> None:
        namespace, name = objects.key(snap)
        with contextlib.suppress(ApiError):  # deleted meanwhile
            self.kube.patch(VOLUME_SNAPSHOTS, namespace, name, {"status": status}, "status")

    def _collect(self, snapshots: list[dict[str, Any]]) -> None:
        """Contents whose snapshot is gone go too (deletionPolicy Delete), with their copies."""
        alive = {objects.text(s, "metadata", "uid") for s in snapshots}
        for content in self.kube.list(VOLUME_SNAPSHOT_CONTENTS)[0]:
            if objects.text(content, "spec", "volumeSnapshotRef", "uid") in alive:
                continue
            if objects.text(content, "spec", "deletionPolicy") != "Delete":
                continue
            with contextlib.suppress(ApiError):
                self.kube.delete(VOLUME_SNAPSHOT_CONTENTS, "", objects.name(content))
            handle = objects.text(content, "status", "snapshotHandle")
            if handle.startswith(str(self.folder.resolve())):
                shutil.rmtree(handle, ignore_errors=True)

    def handle_of(self, namespace: str, snapshot: str) -> str:
        snap = self.kube.get(VOLUME_SNAPSHOTS, namespace, snapshot)
        content = self.kube.get(
            VOLUME_SNAPSHOT_CONTENTS, "", objects.text(snap, "status", "boundVolumeSnapshotContentName")
        )
        return objects.text(content, "status", "snapshotHandle")

    # -- restores ----------------------------------------------------------------------------

    def _sync_restore(self, pvc: dict[str, Any]) -> None:
        source = objects.mapping(pvc, "spec", "dataSource")
        if source.get("kind") != "VolumeSnapshot" or objects.text(pvc, "spec", "volumeName"):
            return
        namespace, name = objects.key(pvc)
        pv_name = f"restore-{objects.text(pvc, 'metadata', 'uid')}"
        if self.kube.get(PVS, "", pv_name) is not None:
            return
        snap = self.kube.get(VOLUME_SNAPSHOTS, namespace, str(source.get("name")))
        if snap is None or objects.dig(snap, "status", "readyToUse") is not True:
            return  # as a provisioner does: wait for the snapshot
        content = self.kube.get(
            VOLUME_SNAPSHOT_CONTENTS, "", objects.text(snap, "status", "boundVolumeSnapshotContentName")
        )
        handle = objects.text(content, "status", "snapshotHandle")
        if not handle.startswith("/"):
            return  # a snapshot without data (simulated Longhorn) cannot be restored here
        target = self.folder / "restores" / pv_name
        shutil.copytree(handle, target, symlinks=True, dirs_exist_ok=True)
        spec: dict[str, Any] = {
            "capacity": {"storage": objects.text(pvc, "spec", "resources", "requests", "storage") or "1Gi"},
            "accessModes": list(objects.items(pvc, "spec", "accessModes")) or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": objects.text(pvc, "spec", "storageClassName"),
            "claimRef": {"namespace": namespace, "name": name, "uid": objects.text(pvc, "metadata", "uid")},
            "local": {"path": str(target.resolve())},
        }
        affinity = self.node_affinity.get(handle) or self._source_affinity(snap)
        if affinity:
            spec["nodeAffinity"] = affinity
        self.kube.create(
            PVS, "", {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name}, "spec": spec}
        )


def interval_policy(kube: Kube, name: str, minutes: int, retain: int) -> None:
    body = {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "SchedulePolicy",
        "metadata": {"name": name},
        "policy": {"interval": {"intervalMinutes": minutes, "retain": retain}},
    }
    kube.create(SCHEDULE_POLICIES, "", body)


def snapshot_schedule(kube: Kube, namespace: str, name: str, policy: str, labels: dict[str, str], **spec: Any) -> None:
    """A VolumeSnapshotSchedule of the PVCs carrying `labels`; `spec` adds rules, reclaimPolicy, ..."""
    body = {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "VolumeSnapshotSchedule",
        "metadata": {"name": name},
        "spec": {
            "schedulePolicyName": policy,
            "template": {"spec": {"pvcSelector": {"matchLabels": labels}}},
            **spec,
        },
    }
    kube.create(SNAPSHOT_SCHEDULES, namespace, body)
