"""The webhook's Flask app: `/mutate` never blocks a pod; `/validate` checks stork's resources."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from storkcore import objects
from storkcore.cluster import StateUnavailable
from storkcore.drivers.base import Driver
from storkcore.kube import Resource
from storkcore.rules import RULE_GROUP, rule_problems
from storkcore.snapshots import RULES, SCHEDULE_POLICIES, SNAPSHOT_GROUP
from storkcore.web import add_health_routes, cache_detail, json_error, json_response
from webhook.admission import AdmissionSettings, Decision, LocalityOf, decide
from webhook.review import NotAReview, Review, allow, deny, parse_review
from webhook.schedules import (
    schedule_policy_problems,
    schedule_policy_warnings,
    snapshot_schedule_problems,
    snapshot_schedule_warnings,
)
from webhook.snapshots import group_snapshot_problems, group_snapshot_warnings, volume_snapshot_warnings

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.admissions = Counter(
            "stork_webhook_admissions",
            "Admission requests by webhook and decision.",
            ["webhook", "decision"],
            registry=registry,
        )
        self.latency = Histogram(
            "stork_webhook_request_duration_seconds",
            "Time to answer an admission request.",
            ["webhook"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.locality = Counter(
            "stork_webhook_locality",
            "Pods sent to stork's scheduler, by whether they were held to their replica nodes.",
            ["held"],
            registry=registry,
        )


def mutate(
    driver: Driver, settings: AdmissionSettings, review: Review, locality_of: LocalityOf | None = None
) -> tuple[dict[str, Any], Decision]:
    try:
        decision = decide(driver, settings, review.object, review.namespace, review.operation, locality_of)
    except Exception:
        # Our own fault must never block a pod: let it through untouched.
        log.exception("admission decision failed", extra={"uid": review.uid})
        decision = Decision("error", warning="stork: internal error; pod left on its scheduler")
    if decision.patch:
        log.info(
            "pod sent to scheduler",
            extra={"namespace": review.namespace, "pod": _pod_name(review.object), "dry_run": review.dry_run},
        )
    return allow(review, decision.patch, [decision.warning] if decision.warning else None), decision


def validate(driver: Driver, review: Review) -> tuple[dict[str, Any], str]:
    """Rules and GroupVolumeSnapshots are checked; CSI VolumeSnapshots only get warnings."""
    group, kind = review.kind_of_object()
    if review.operation not in ("CREATE", "UPDATE"):
        return allow(review), "ignored"
    if group == SNAPSHOT_GROUP and kind == "VolumeSnapshot":
        warnings = volume_snapshot_warnings(review.object)
        return allow(review, warnings=warnings), "warned" if warnings else "allowed"
    checks: dict[str, Callable[[], list[str]]] = {
        "Rule": lambda: rule_problems(review.object),
        "GroupVolumeSnapshot": lambda: group_snapshot_problems(
            review.object, review.namespace, lambda ns, name: _read(driver, RULES, ns, name)
        ),
        "SchedulePolicy": lambda: schedule_policy_problems(review.object),
        "VolumeSnapshotSchedule": lambda: snapshot_schedule_problems(
            review.object, lambda name: _read(driver, SCHEDULE_POLICIES, "", name, missing_is_unknown=False)
        ),
    }
    notes: dict[str, Callable[[], list[str]]] = {
        "GroupVolumeSnapshot": lambda: group_snapshot_warnings(review.object),
        "SchedulePolicy": lambda: schedule_policy_warnings(review.object),
        "VolumeSnapshotSchedule": lambda: snapshot_schedule_warnings(review.object),
    }
    if group != RULE_GROUP or kind not in checks:
        return allow(review), "ignored"
    problems = checks[kind]()
    if problems:
        return deny(review, f"invalid {kind}: {'; '.join(problems)}"), "denied"
    warnings = notes[kind]() if kind in notes else []
    return allow(review, warnings=warnings), "warned" if warnings else "allowed"


def _read(
    driver: Driver, resource: Resource, namespace: str, name: str, missing_is_unknown: bool = True
) -> dict[str, Any] | None:
    """One direct read (these admissions are rare). When the API cannot say: None, or a stand-in
    object when a missing object would deny (never deny for our own trouble)."""
    try:
        return driver.cluster.get(resource, namespace, name)
    except StateUnavailable:
        return None if missing_is_unknown else {}


def _pod_name(pod: Any) -> str:
    return objects.name(pod) or objects.text(pod, "metadata", "generateName") + "*"


def create_app(
    driver: Driver,
    settings: AdmissionSettings,
    ready: Callable[[], bool] | None = None,
    locality_of: LocalityOf | None = None,
) -> Flask:
    app = Flask("stork-webhook")
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    # Admission needs only whose claims are whose: never the storage API, not even for readiness.
    add_health_routes(app, ready or driver.cluster.synced, registry, cache_detail(driver))

    def serve(webhook: str, handle: Callable[[Review], tuple[dict[str, Any], str]]) -> Response:
        started = time.perf_counter()
        try:
            review = parse_review(request.get_data())
        except NotAReview as err:
            metrics.admissions.labels(webhook, "bad-request").inc()
            return json_error(str(err))
        answer, outcome = handle(review)
        metrics.admissions.labels(webhook, outcome).inc()
        metrics.latency.labels(webhook).observe(time.perf_counter() - started)
        return json_response(answer)

    def mutate_and_count(review: Review) -> tuple[dict[str, Any], str]:
        answer, decision = mutate(driver, settings, review, locality_of)
        if decision.held is not None:
            metrics.locality.labels("true" if decision.held else "false").inc()
        return answer, decision.outcome

    @app.post("/mutate")
    def mutate_verb() -> Response:
        return serve("mutate", mutate_and_count)

    @app.post("/validate")
    def validate_verb() -> Response:
        return serve("validate", lambda review: validate(driver, review))

    return app
