"""Snapshot kinds: CSI's VolumeSnapshot family and stork's own GroupVolumeSnapshot and Rule.

Group, kinds and field names are upstream Stork's and CSI's (SPEC §7), so existing manifests
keep working.
"""

from __future__ import annotations

from typing import Any

from storkcore import objects
from storkcore.kube import Resource

STORK_GROUP = "stork.libopenstorage.org"
STORK_VERSION = "v1alpha1"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"

RULES = Resource(STORK_GROUP, STORK_VERSION, "rules")
GROUP_SNAPSHOTS = Resource(STORK_GROUP, STORK_VERSION, "groupvolumesnapshots")
SCHEDULE_POLICIES = Resource(STORK_GROUP, STORK_VERSION, "schedulepolicies")
SNAPSHOT_SCHEDULES = Resource(STORK_GROUP, STORK_VERSION, "volumesnapshotschedules")
VOLUME_SNAPSHOTS = Resource(SNAPSHOT_GROUP, "v1", "volumesnapshots")
VOLUME_SNAPSHOT_CONTENTS = Resource(SNAPSHOT_GROUP, "v1", "volumesnapshotcontents")
VOLUME_SNAPSHOT_CLASSES = Resource(SNAPSHOT_GROUP, "v1", "volumesnapshotclasses")

DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
GROUP_LABEL = STORK_GROUP + "/group-snapshot"  # on each VolumeSnapshot: the owning group's name
# Upstream Stork's annotations for rules on a single snapshot (a CSI snapshot cannot honour them).
PRE_SNAPSHOT_RULE = STORK_GROUP + "/pre-snapshot-rule"
POST_SNAPSHOT_RULE = STORK_GROUP + "/post-snapshot-rule"

# GroupVolumeSnapshot stages and statuses (SPEC §7.2)
PRE_CHECKS, PRE_SNAPSHOT, SNAPSHOT, POST_SNAPSHOT, FINAL = (
    "PreChecks",
    "PreSnapshot",
    "Snapshot",
    "PostSnapshot",
    "Final",
)
PENDING, IN_PROGRESS, SUCCESSFUL, FAILED = "Pending", "InProgress", "Successful", "Failed"


def snapshot_cut(snapshot: Any) -> bool:
    """Cut: the moment CSI took the snapshot is recorded (`status.creationTime`)."""
    return bool(objects.dig(snapshot, "status", "creationTime"))


def snapshot_ready(snapshot: Any) -> bool:
    return objects.dig(snapshot, "status", "readyToUse") is True


def snapshot_error(snapshot: Any) -> str:
    return objects.text(snapshot, "status", "error", "message")


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner.get("apiVersion") or f"{STORK_GROUP}/{STORK_VERSION}",
        "kind": owner.get("kind") or "GroupVolumeSnapshot",
        "name": objects.name(owner),
        "uid": objects.text(owner, "metadata", "uid"),
        "controller": True,
    }
