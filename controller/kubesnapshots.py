"""The group snapshot and schedule controllers' view of the cluster, over the apiserver.

Groups, PVCs and pods come from the watch caches; whatever the controller is about to act on
(a group's own status, a VolumeSnapshot's progress, a Rule, the snapshot classes) is read
fresh, so that a restarted or newly elected controller never acts on a stale copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storkcore import claims, objects
from storkcore.cluster import ClusterState
from storkcore.events import EventRecorder
from storkcore.kube import PODS, PVCS, ApiError, Kube
from storkcore.snapshots import (
    GROUP_LABEL,
    GROUP_SNAPSHOTS,
    RULES,
    SCHEDULE_POLICIES,
    SNAPSHOT_SCHEDULES,
    VOLUME_SNAPSHOT_CLASSES,
    VOLUME_SNAPSHOTS,
)


class KubeSnapshotCluster:
    def __init__(self, kube: Kube, cluster: ClusterState, events: EventRecorder) -> None:
        self.kube = kube
        self.state = cluster
        self.events = events

    def groups(self) -> list[dict[str, Any]]:
        return self.state.store(GROUP_SNAPSHOTS).list()

    def group(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(GROUP_SNAPSHOTS, namespace, name)

    def patch_group_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self.kube.patch(GROUP_SNAPSHOTS, namespace, name, {"status": dict(status)}, subresource="status")

    def pvcs(self, namespace: str) -> list[dict[str, Any]]:
        return [p for p in self.state.store(PVCS).list() if objects.namespace(p) == namespace]

    def rule(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(RULES, namespace, name)

    def snapshot_classes(self) -> list[dict[str, Any]]:
        return self.kube.list(VOLUME_SNAPSHOT_CLASSES)[0]

    def provisioner_of(self, pvc: Mapping[str, Any]) -> str:
        return claims.provisioner_of(self.state, pvc)

    def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.kube.create(VOLUME_SNAPSHOTS, namespace, body)

    def snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(VOLUME_SNAPSHOTS, namespace, name)

    def snapshots_of(self, namespace: str, group: str) -> list[dict[str, Any]]:
        path = VOLUME_SNAPSHOTS.object_path(namespace, "").rstrip("/")
        found = self.kube.request("GET", path, {"labelSelector": f"{GROUP_LABEL}={group}"})
        return list(found.get("items") or [])

    def delete_snapshot(self, namespace: str, name: str) -> None:
        try:
            self.kube.delete(VOLUME_SNAPSHOTS, namespace, name)
        except ApiError as err:
            if err.status != 404:
                raise

    def event(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.record(obj, event_type, reason, message)

    # PodSource for the rule runner

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return [p for p in self.state.store(PODS).list() if objects.namespace(p) == namespace]

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.state.get(PODS, namespace, name)  # the watch cache; one GET on a miss


class KubeScheduleCluster:
    """The schedule controller's view: schedules, policies and groups from the watch caches
    (one GET on a miss), writes to the API."""

    def __init__(self, kube: Kube, cluster: ClusterState, events: EventRecorder) -> None:
        self.kube = kube
        self.state = cluster
        self.events = events

    def schedules(self) -> list[dict[str, Any]]:
        return self.state.store(SNAPSHOT_SCHEDULES).list()

    def policy(self, name: str) -> dict[str, Any] | None:
        return self.state.get(SCHEDULE_POLICIES, "", name)

    def group(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.state.get(GROUP_SNAPSHOTS, namespace, name)

    def create_group(self, namespace: str, body: Mapping[str, Any]) -> None:
        self.kube.create(GROUP_SNAPSHOTS, namespace, body)

    def delete_group(self, namespace: str, name: str) -> None:
        try:
            self.kube.delete(GROUP_SNAPSHOTS, namespace, name, {"propagationPolicy": "Background"})
        except ApiError as err:
            if err.status != 404:
                raise

    def patch_schedule_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.kube.patch(SNAPSHOT_SCHEDULES, namespace, name, {"status": dict(status)}, subresource="status")

    def event(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.record(
            {"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "VolumeSnapshotSchedule", **obj},
            event_type,
            reason,
            message,
        )
