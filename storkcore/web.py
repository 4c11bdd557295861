"""What every stork-py HTTP app serves besides its own verbs: health and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from storkcore.serving import ServedCertificate


def json_response(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def json_error(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)


def driver_ready(driver: Any) -> Callable[[], bool]:
    """Ready once the caches have synced and the driver has answered at least once."""
    return lambda: driver.cluster.synced() and driver.ready()


def register_driver_metrics(registry: CollectorRegistry, driver: Any) -> None:
    """Drivers over a storage API export their refresh and error counters."""
    if callable(getattr(driver, "collect", None)):
        registry.register(driver)


def add_health_routes(app: Flask, ready: Callable[[], bool], registry: CollectorRegistry) -> None:
    registry.register(ServedCertificate())
    responses = Counter(
        "stork_http_responses",
        "Every HTTP response this server sent, by route and status code (/readyz answers 503 while not ready).",
        ["route", "code"],
        registry=registry,
    )

    @app.after_request
    def count_response(response: Response) -> Response:  # runs for Flask's own 500s too
        route = request.url_rule.rule if request.url_rule is not None else "other"
        responses.labels(route, str(response.status_code)).inc()
        return response

    @app.get("/livez")
    def livez() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        if ready():
            return json_response({"status": "ready"})
        return json_response({"status": "caches not synced"}, 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return json_error("not found", 404)

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return json_error("method not allowed", 405)
