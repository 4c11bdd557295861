"""Objects of the four stork kinds as upstream Stork's Go client writes them back: every field
of its types present (none is `omitempty`), unset strings as "", unset maps, lists and
pointers as null. Shared by the webhook's unit tests and the end-to-end proof."""

from __future__ import annotations

import copy
from typing import Any

GROUP_VERSION = "stork.libopenstorage.org/v1alpha1"

UPSTREAM_RULE: dict[str, Any] = {
    "rules": [
        {
            "podSelector": {"app": "ledger"},
            "actions": [{"type": "command", "value": "sync", "background": False, "runInSinglePod": False}],
            "container": "",
        }
    ]
}
UPSTREAM_POLICY: dict[str, Any] = {
    "policy": {
        "interval": {"intervalMinutes": 60, "retain": 0, "options": None},
        "daily": {"time": "10:14PM", "retain": 0, "options": {"portworx/snapshot-type": "local"},
                  "forceFullSnapshotDay": "Monday"},
        "weekly": None,
        "monthly": None,
    }
}  # fmt: skip
UPSTREAM_SCHEDULE: dict[str, Any] = {
    "spec": {
        "template": {"spec": {"snapshotDataName": "", "persistentVolumeClaimName": "data"}},
        "schedulePolicyName": "hourly",
        "suspend": None,
        "reclaimPolicy": "",
        "preExecRule": "",
        "postExecRule": "",
    },
    "status": {"items": None},
}
UPSTREAM_GROUP: dict[str, Any] = {
    "spec": {
        "preExecRule": "",
        "postExecRule": "",
        "pvcSelector": {"matchLabels": {"app": "db"}},
        "options": None,
        "restoreNamespaces": None,
        "maxRetries": 0,
    },
    "status": {"stage": "", "status": "", "volumeSnapshots": None},
}


def upstream_object(kind: str, name: str, namespace: str = "", **spec: Any) -> dict[str, Any]:
    """A full object of `kind` (Rule, GroupVolumeSnapshot, SchedulePolicy,
    VolumeSnapshotSchedule), with `spec` fields replaced."""
    body = copy.deepcopy(
        {
            "Rule": UPSTREAM_RULE,
            "GroupVolumeSnapshot": UPSTREAM_GROUP,
            "SchedulePolicy": UPSTREAM_POLICY,
            "VolumeSnapshotSchedule": UPSTREAM_SCHEDULE,
        }[kind]
    )
    if spec:
        body["spec"].update(spec)
    metadata: dict[str, Any] = {"name": name, "creationTimestamp": None}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": metadata, **body}
