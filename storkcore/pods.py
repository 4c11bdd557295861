"""What storage a pod uses, in terms of the storage model.

`assess_pod` turns a pod into the facts both the filter and the scoring need:
its driver volumes, or the reason no node can host it yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storkcore import annotations as ann
from storkcore import claims, objects
from storkcore.drivers.base import Driver
from storkcore.model import DriverError, Volume


def claim_names(pod: Any) -> list[str]:
    """Claims a pod mounts: `persistentVolumeClaim` volumes, and generic ephemeral
    volumes, whose claim the ephemeral controller names `<pod>-<volume>`."""
    found: list[str] = []
    pod_name = objects.name(pod)
    for volume in objects.items(pod, "spec", "volumes"):
        if not isinstance(volume, Mapping):
            continue
        claim = objects.text(volume, "persistentVolumeClaim", "claimName")
        if claim:
            found.append(claim)
        elif isinstance(volume.get("ephemeral"), Mapping) and pod_name and objects.text(volume, "name"):
            found.append(f"{pod_name}-{volume['name']}")
    return found


@dataclass
class PodStorage:
    """The storage facts of one pod, from cached state."""

    uses_driver: bool = False  # at least one claim belongs to the driver
    blocked: str = ""  # why no node can host the pod now (every node fails)
    driver_error: str = ""  # the driver could not answer (fail open)
    windows: bool = False  # a Windows volume: driver placement rules do not apply
    volumes: list[Volume] = field(default_factory=list)  # bound, non-Windows driver volumes

    @property
    def concerns_driver(self) -> bool:
        """Whether the extender has anything to say about this pod."""
        return self.uses_driver or bool(self.blocked or self.driver_error)


def assess_pod(driver: Driver, pod: Any, namespace: str = "", cached_only: bool = False) -> PodStorage:
    """`namespace` when the pod does not carry one yet (at admission); `cached_only`: never wait
    for a storage API (a volume not in memory yet is a driver error)."""
    namespace = namespace or objects.namespace(pod)
    volume_of = driver.cached_volume if cached_only else driver.volume
    result = PodStorage()
    for claim in claim_names(pod):
        try:
            pvc = driver.cluster.pvc(namespace, claim)
        except DriverError as err:
            result.driver_error = result.driver_error or str(err)
            continue
        if pvc is None:
            result.blocked = result.blocked or f"PVC {claim} not found"
            continue
        if not driver.owns(pvc):
            continue
        result.uses_driver = True
        if ann.is_true(objects.annotations(pvc).get(ann.RESTORE_IN_PROGRESS)):
            result.blocked = result.blocked or f"PVC {claim} is being restored"
            continue
        if claims.is_pending(pvc):
            # WaitForFirstConsumer claims bind after scheduling: no constraint yet.
            if not claims.waits_for_first_consumer(driver.cluster, pvc):
                result.blocked = result.blocked or f"waiting for PVC {claim} to be bound"
            continue
        try:
            volume = volume_of(pvc)
        except DriverError as err:
            result.driver_error = result.driver_error or str(err)
            continue
        if volume is None:
            continue
        if volume.windows:
            result.windows = True
        else:
            result.volumes.append(volume)
    return result


def wants_remote_only(volume: Volume) -> bool:
    """Anti-hyperconverged and asking to avoid its replica nodes outright."""
    return anti_hyperconverged(volume) and ann.is_true(volume.labels.get(ann.PREFER_REMOTE_NODE_ONLY))


def anti_hyperconverged(volume: Volume) -> bool:
    """Needs anti-hyperconvergence and the user did not turn it off (`preferRemoteNode: false`)."""
    return volume.needs_anti_hyperconvergence and not ann.is_false(volume.labels.get(ann.PREFER_REMOTE_NODE))
