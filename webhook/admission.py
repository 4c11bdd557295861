"""The admission decision for pods (SPEC §3): should this pod go to stork's scheduler?

A pod on CREATE is sent to the configured scheduler when it uses a volume of
the driver, does not opt out, and does not name another scheduler. The patch
sets `/spec/schedulerName`; where locality at scale applies (storkcore/locality.py)
it also holds the pod to its replica nodes with a required node affinity, and
otherwise records why not in an annotation. A pod already sent there gets no
patch, so a reinvocation changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from storkcore import annotations as ann
from storkcore import claims, objects
from storkcore.drivers.base import Driver
from storkcore.locality import Locality, annotation_ops, constraint_patch
from storkcore.model import DriverError

log = logging.getLogger(__name__)
DEFAULT_SCHEDULER = "default-scheduler"
LocalityOf = Callable[[Any, str], Locality]  # (pod, namespace) -> the constraint or why none


@dataclass(frozen=True)
class AdmissionSettings:
    scheduler_name: str = "stork"
    skip_annotation: str = ann.DISABLE_ADMISSION_CONTROLLER


@dataclass(frozen=True)
class Decision:
    outcome: str  # for metrics: mutated, not-ours, opted-out, other-scheduler, already-set, ignored, error
    patch: list[dict] | None = None
    warning: str = ""
    held: bool | None = None  # held to its replica nodes (None: locality not considered)


def decide(
    driver: Driver,
    settings: AdmissionSettings,
    pod: Any,
    namespace: str,
    operation: str,
    locality_of: LocalityOf | None = None,
) -> Decision:
    if operation != "CREATE" or not isinstance(pod, Mapping):
        return Decision("ignored")
    if ann.is_true(objects.annotations(pod).get(settings.skip_annotation)):
        return Decision("opted-out")
    current = objects.text(pod, "spec", "schedulerName")
    if current == settings.scheduler_name:
        return Decision("already-set")
    if current not in ("", DEFAULT_SCHEDULER):
        return Decision("other-scheduler")  # the user's explicit choice
    try:
        owned, missing = _driver_volumes(driver, pod, namespace)
    except DriverError as err:
        return Decision("error", warning=f"stork: pod left on its scheduler: {err}")
    if owned:
        patch = [{"op": "add", "path": "/spec/schedulerName", "value": settings.scheduler_name}]
        if locality_of is None:
            return Decision("mutated", patch=patch)
        locality = _locality(locality_of, pod, namespace)
        if locality.constrained:
            patch += constraint_patch(pod, locality)
        else:
            patch += annotation_ops(pod, {ann.LOCALITY: f"not held to replica nodes: {locality.reason}"})
        return Decision("mutated", patch=patch, held=locality.constrained)
    if missing:
        return Decision("not-ours", warning=f"stork: PVC {missing[0]} not found; pod left on its scheduler")
    return Decision("not-ours")


def _driver_volumes(driver: Driver, pod: Any, namespace: str) -> tuple[bool, list[str]]:
    """Whether any volume belongs to the driver, and the claims that do not exist (yet)."""
    missing: list[str] = []
    for volume in objects.items(pod, "spec", "volumes"):
        if not isinstance(volume, Mapping):
            continue
        claim_name = objects.text(volume, "persistentVolumeClaim", "claimName")
        if claim_name:
            pvc = driver.cluster.pvc(namespace, claim_name)
            if pvc is None:
                missing.append(claim_name)
            elif driver.owns(pvc):
                return True, missing
            continue
        template = objects.mapping(volume, "ephemeral", "volumeClaimTemplate")
        if template and _template_owned(driver, template):
            return True, missing
    return False, missing


def _template_owned(driver: Driver, template: Mapping[str, Any]) -> bool:
    """A generic ephemeral volume: its claim does not exist yet, its class tells."""
    sc = claims.storage_class_of(driver.cluster, template)
    return sc is not None and driver.owns_class(sc)


def _locality(locality_of: LocalityOf, pod: Any, namespace: str) -> Locality:
    """The constraint, failing open: any trouble of ours leaves the pod unconstrained."""
    try:
        return locality_of(pod, namespace)
    except DriverError as err:
        return Locality(reason=f"storage state unavailable: {err}"[:200])
    except Exception:
        log.exception("locality decision failed")
        return Locality(reason="internal error")
