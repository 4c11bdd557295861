"""The controller's features, each started on its own.

A feature (the health monitor, the locality fallback, group snapshots, schedules, certificate
renewal) names the kinds it reads from the watch caches and the kinds it reads or writes
directly. It is built once all of them are there; until then it waits, and the others run. A
feature whose kind is not served (a CRD not installed yet) starts as soon as the kind appears,
without a restart. Each state change is logged once and exported as
`stork_controller_feature_ready{feature}`; `/readyz` lists every feature's state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge

from storkcore.cluster import ClusterState
from storkcore.kube import ApiError, Kube, Resource

log = logging.getLogger(__name__)

RUNNING = "running"
PROBE_INTERVAL = 10.0  # seconds between two checks that a waited-for kind is served


class Part(Protocol):
    def tick(self) -> float | None: ...


@dataclass
class Feature:
    name: str
    build: Callable[[], Part]
    cached: tuple[Resource, ...] = ()  # read from the watch caches: must have been listed
    served: tuple[Resource, ...] = ()  # read or written directly: must be served
    precondition: Callable[[], str] = lambda: ""  # what else it waits for ("" when nothing)
    part: Part | None = None
    state: str = "starting"
    waits_for_unserved: bool = field(default=False, repr=False)


def served_probe(kube: Kube) -> Callable[[Resource], str]:
    """ "" when the API serves the kind, else why not (one LIST of at most one object)."""

    def probe(resource: Resource) -> str:
        try:
            kube.request("GET", resource.collection_path(), {"limit": "1"})
        except ApiError as err:
            return "not served" if err.status == 404 else f"failing: API answered {err.status}"
        except Exception as err:  # connection trouble
            return f"failing: {type(err).__name__}"
        return ""

    return probe


def kind_name(resource: Resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


class Features:
    def __init__(
        self,
        cluster: ClusterState,
        probe: Callable[[Resource], str],
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.probe = probe
        self.clock = clock
        self.features: list[Feature] = []
        self._probed: dict[Resource, tuple[float, str]] = {}
        self.gauge = Gauge(
            "stork_controller_feature_ready",
            "1 while a controller feature runs, 0 while it waits (for an API kind, a cache, the storage system).",
            ["feature"],
            registry=registry,
        )

    def add(self, feature: Feature) -> None:
        self.features.append(feature)
        self.gauge.labels(feature.name).set(0)

    def tick(self) -> float | None:
        """Start what can start, run what runs; the shortest wait any part asked for."""
        waits = []
        for feature in self.features:
            if feature.part is None and not self._start(feature):
                continue
            try:
                wait = feature.part.tick() if feature.part is not None else None
            except Exception as err:
                self._set(feature, f"failing: {type(err).__name__}: {str(err)[:160]}", error=err)
                continue
            self._set(feature, RUNNING)
            if isinstance(wait, int | float):
                waits.append(wait)
        return min(waits) if waits else None

    def _start(self, feature: Feature) -> bool:
        reasons, unserved = self._waiting_for(feature)
        feature.waits_for_unserved = bool(reasons) and unserved
        if reasons:
            self._set(feature, "waiting for " + "; ".join(reasons))
            return False
        try:
            feature.part = feature.build()
        except Exception as err:
            self._set(feature, f"failing to start: {type(err).__name__}: {str(err)[:160]}", error=err)
            return False
        return True

    def _waiting_for(self, feature: Feature) -> tuple[list[str], bool]:
        """What the feature still waits for, and whether every one is a kind the API does not
        serve (an optional part of the install, not a fault)."""
        states = self.cluster.kind_states()
        reasons, unserved = [], True
        for resource in feature.cached:
            if not self.cluster.synced_for([resource]):
                state = states.get(resource, "starting")
                reasons.append(f"{kind_name(resource)}: {state}")
                unserved &= state == "not served"
        for resource in feature.served:
            state = self._served(resource)
            if state:
                reasons.append(f"{kind_name(resource)}: {state}")
                unserved &= state == "not served"
        extra = feature.precondition()
        if extra:
            reasons.append(extra)
            unserved = False
        return reasons, unserved

    def _served(self, resource: Resource) -> str:
        now = self.clock()
        checked = self._probed.get(resource)
        if checked is None or (checked[1] and now - checked[0] >= PROBE_INTERVAL):
            checked = self._probed[resource] = (now, self.probe(resource))
        return checked[1]

    def _set(self, feature: Feature, state: str, error: Exception | None = None) -> None:
        if state == feature.state:
            return
        feature.state = state
        self.gauge.labels(feature.name).set(1 if state == RUNNING else 0)
        if state == RUNNING:
            log.info("feature running", extra={"feature": feature.name})
        elif error is not None:
            log.error("feature failing", extra={"feature": feature.name, "state": state}, exc_info=error)
        else:
            log.warning("feature waiting", extra={"feature": feature.name, "state": state})

    def states(self) -> dict[str, str]:
        return {f.name: f.state for f in self.features}

    def ready(self) -> bool:
        """Every feature runs, or waits only for kinds this cluster does not serve (a partial
        install, which the feature states and metric show)."""
        return all(f.state == RUNNING or f.waits_for_unserved for f in self.features)
