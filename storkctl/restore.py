"""`storkctl restore`: new PVCs from every snapshot of a Successful GroupVolumeSnapshot.

In the group's namespace a PVC names the group's VolumeSnapshot as its dataSource. CSI restores
only within a namespace, so a restore into another namespace (one the group lists in
`spec.restoreNamespaces`, as upstream Stork reads that field) first pre-provisions, per volume,
a VolumeSnapshotContent pointing at the same snapshotHandle and a VolumeSnapshot bound to it
in the target namespace; the PVC there names that VolumeSnapshot. The copy's content is
`Retain`: deleting it never deletes the snapshot the source group owns.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from storkcore import objects
from storkcore.kube import NAMESPACES, PVCS, ApiError, Kube, Resource
from storkcore.snapshots import (
    GROUP_SNAPSHOTS,
    SNAPSHOT_GROUP,
    SUCCESSFUL,
    VOLUME_SNAPSHOT_CONTENTS,
    VOLUME_SNAPSHOTS,
)
from storkctl.objects import Refused

RESTORED_FROM = "stork.libopenstorage.org/restored-from"
SNAPSHOT_API = f"{SNAPSHOT_GROUP}/v1"


def add_restore(commands: argparse._SubParsersAction) -> None:
    restore = commands.add_parser(
        "restore",
        help="new PVCs from every snapshot of a Successful GroupVolumeSnapshot",
        description="Create a PVC from each VolumeSnapshot of a GroupVolumeSnapshot, with the source PVC's size, "
        "class and access modes, in the group's namespace, or with --to-namespace in a namespace the group lists "
        "in spec.restoreNamespaces.",
    )
    restore.add_argument("group", metavar="GROUPSNAPSHOT")
    restore.add_argument("-n", "--namespace", default="default", help="namespace of the GroupVolumeSnapshot")
    restore.add_argument(
        "--to-namespace",
        metavar="TARGET",
        default="",
        help="restore into TARGET, which the group must list in spec.restoreNamespaces (default: its own)",
    )
    restore.add_argument("--suffix", default="", help="name the new PVCs SOURCE-SUFFIX (default: the source's name)")
    restore.add_argument("--dry-run", action="store_true", help="print what would be created, create nothing")


@dataclass
class Plan:
    """What a restore creates, in order: snapshot copies (cross-namespace only), then claims."""

    namespace: str  # where the claims go
    contents: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)


def restore_plan(kube: Kube, namespace: str, group_name: str, suffix: str, target: str = "") -> Plan:
    """Everything to create for a restore, checked before anything is created."""
    group = _successful_group(kube, namespace, group_name)
    target = target or namespace
    if target != namespace:
        _check_target(kube, group, target)
    plan = Plan(target)
    for entry in objects.items(group, "status", "volumeSnapshots"):
        snapshot_name, source_name = objects.text(entry, "volumeSnapshotName"), objects.text(entry, "parentVolumeID")
        snapshot = kube.get(VOLUME_SNAPSHOTS, namespace, snapshot_name)
        if snapshot is None:
            raise Refused(f"volumesnapshot {namespace}/{snapshot_name} of the group no longer exists")
        if target != namespace:
            content, copy = _snapshot_copy(kube, snapshot, target, group_name)
            plan.contents.append(content)
            plan.snapshots.append(copy)
        source = kube.get(PVCS, namespace, source_name)
        name = f"{source_name}-{suffix}" if suffix else source_name
        plan.claims.append(_claim(target, group_name, name, snapshot, source))
    return plan


def _successful_group(kube: Kube, namespace: str, group_name: str) -> dict[str, Any]:
    group = kube.get(GROUP_SNAPSHOTS, namespace, group_name)
    if group is None:
        raise Refused(f"groupvolumesnapshot {namespace}/{group_name} not found")
    state = objects.text(group, "status", "status")
    if state != SUCCESSFUL:
        reason = objects.text(group, "status", "reason")
        raise Refused(
            f"groupvolumesnapshot {group_name} is {state or 'new'}, not Successful{': ' + reason if reason else ''}"
        )
    return group


def _check_target(kube: Kube, group: dict[str, Any], target: str) -> None:
    allowed = [n for n in objects.items(group, "spec", "restoreNamespaces") if isinstance(n, str)]
    if target not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        raise Refused(
            f"groupvolumesnapshot {objects.name(group)} may not be restored into namespace {target}: "
            f"its spec.restoreNamespaces lists {listed}"
        )
    if kube.get(NAMESPACES, "", target) is None:
        raise Refused(f"namespace {target} not found")


def _snapshot_copy(
    kube: Kube, snapshot: dict[str, Any], target: str, group: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pre-provisioned VolumeSnapshotContent on the snapshot's handle, and a VolumeSnapshot
    in the target namespace bound to it (same name as the source snapshot)."""
    name = objects.name(snapshot)
    bound = objects.text(snapshot, "status", "boundVolumeSnapshotContentName")
    content = kube.get(VOLUME_SNAPSHOT_CONTENTS, "", bound) if bound else None
    handle = objects.text(content, "status", "snapshotHandle")
    if content is None or not handle or objects.dig(snapshot, "status", "readyToUse") is not True:
        raise Refused(f"volumesnapshot {objects.namespace(snapshot)}/{name} is not ready to use (no snapshot handle)")
    class_name = objects.text(content, "spec", "volumeSnapshotClassName")
    # One copy per (snapshot, target): a second restore into the same namespace reuses it.
    copy_name = f"stork-restore-{objects.text(snapshot, 'metadata', 'uid')}-{target}"
    labels = {RESTORED_FROM: group}
    content_spec: dict[str, Any] = {
        "deletionPolicy": "Retain",  # the data is the source snapshot's: never deleted through the copy
        "driver": objects.text(content, "spec", "driver"),
        "source": {"snapshotHandle": handle},
        "volumeSnapshotRef": {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "namespace": target, "name": name},
    }
    snapshot_spec: dict[str, Any] = {"source": {"volumeSnapshotContentName": copy_name}}
    if class_name:
        content_spec["volumeSnapshotClassName"] = class_name
        snapshot_spec["volumeSnapshotClassName"] = class_name
    return (
        {
            "apiVersion": SNAPSHOT_API,
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": copy_name, "labels": labels},
            "spec": content_spec,
        },
        {
            "apiVersion": SNAPSHOT_API,
            "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": target, "labels": labels},
            "spec": snapshot_spec,
        },
    )


def _claim(namespace: str, group: str, name: str, snapshot: dict[str, Any], source: dict[str, Any] | None) -> dict:
    size = objects.text(source, "spec", "resources", "requests", "storage") or objects.text(
        snapshot, "status", "restoreSize"
    )
    if not size:
        raise Refused(
            f"volumesnapshot {objects.name(snapshot)}: source PVC gone and no restoreSize to size the new one"
        )
    spec: dict[str, Any] = {
        "accessModes": list(objects.items(source, "spec", "accessModes")) or ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": objects.name(snapshot)},
    }
    if source is not None and "storageClassName" in objects.mapping(source, "spec"):
        spec["storageClassName"] = objects.mapping(source, "spec")["storageClassName"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**objects.labels(source), RESTORED_FROM: group},
        },
        "spec": spec,
    }


def restore(kube: Kube, args: argparse.Namespace) -> None:
    plan = restore_plan(kube, args.namespace, args.group, args.suffix, getattr(args, "to_namespace", ""))
    verb = "would be created" if args.dry_run else "created"
    for content in plan.contents:
        if not args.dry_run:
            _create_or_reuse(kube, VOLUME_SNAPSHOT_CONTENTS, "", content, ("spec", "source", "snapshotHandle"))
        print(f"volumesnapshotcontent/{objects.name(content)} {verb} (Retain, on the source snapshot's handle)")
    for snapshot in plan.snapshots:
        if not args.dry_run:
            _create_or_reuse(
                kube, VOLUME_SNAPSHOTS, plan.namespace, snapshot, ("spec", "source", "volumeSnapshotContentName")
            )
        print(f"volumesnapshot/{objects.name(snapshot)} {verb} in namespace {plan.namespace}")
    for claim in plan.claims:
        name, source = objects.name(claim), claim["spec"]["dataSource"]["name"]
        if not args.dry_run:
            try:
                kube.create(PVCS, plan.namespace, claim)
            except ApiError as err:
                if err.status == 409:
                    raise Refused(
                        f"persistentvolumeclaim {plan.namespace}/{name} already exists (use --suffix)"
                    ) from err
                raise
        print(f"persistentvolumeclaim/{name} {verb} from volumesnapshot/{source}")


def _create_or_reuse(kube: Kube, resource: Resource, namespace: str, body: dict[str, Any], same: tuple) -> None:
    """Create; an object of that name from an earlier restore is reused when it points at the
    same source, and refused when it is something else."""
    try:
        kube.create(resource, namespace, body)
        return
    except ApiError as err:
        if err.status != 409:
            raise
    existing = kube.get(resource, namespace, objects.name(body))
    if objects.text(existing, *same) != objects.text(body, *same):
        where = f"{namespace}/" if namespace else ""
        raise Refused(f"{resource.plural[:-1]} {where}{objects.name(body)} already exists and is not this restore's")
