"""What every stork-py HTTP app serves besides its own verbs: health and metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from storkcore.processmetrics import exposition_registry
from storkcore.serving import ServedCertificate


def json_response(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def error_body(message: str) -> bytes:
    """The JSON every stork-py error answer carries: {"error": message}."""
    return orjson.dumps({"error": message})


def json_error(message: str, status: int = 400) -> Response:
    return Response(error_body(message), status=status, mimetype="application/json")


def driver_ready(driver: Any) -> Callable[[], bool]:
    """Ready once the caches have synced and the driver has answered at least once."""
    return lambda: driver.cluster.synced() and driver.ready()


def cache_detail(driver: Any) -> Callable[[], dict[str, Any]]:
    """/readyz detail: each watched cache's state (synced, not served, failing, starting) and
    whether the storage system has answered."""

    def detail() -> dict[str, Any]:
        caches = {str(resource): state for resource, state in driver.cluster.kind_states().items()}
        return {"caches": caches, "storage": "answered" if driver.ready() else "not answered yet"}

    return detail


def register_driver_metrics(registry: CollectorRegistry, driver: Any) -> None:
    """Drivers over a storage API export their refresh and error counters."""
    if callable(getattr(driver, "collect", None)):
        registry.register(driver)


def add_health_routes(
    app: Flask,
    ready: Callable[[], bool],
    registry: CollectorRegistry,
    detail: Callable[[], dict[str, Any]] | None = None,
) -> Counter:
    """/livez, /readyz, /metrics and JSON errors; returns the counter of every response sent.
    `detail` adds what the component waits for to /readyz's answer (ready or not)."""
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
        more = detail() if detail is not None else {}
        if ready():
            return json_response({"status": "ready", **more})
        return json_response({"status": "not ready", **more}, 503)

    served = exposition_registry(registry)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(served), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return json_error("not found", 404)

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return json_error("method not allowed", 405)

    return responses


# What a route answered below Flask returns: status code, JSON body, extra headers.
DirectAnswer = tuple[int, bytes, list[tuple[str, str]]]


class DirectRoutes:
    """WSGI middleware: POST to a few paths is answered without Flask's request and response objects.

    For the calls a caller waits on in its loop (kube-scheduler's /filter and /prioritize): Flask's
    request and response objects cost 0.3-0.55 ms of CPU per call under granian, about as much as
    the rest of an empty handler (bench/README.md, "Answering the verbs below Flask"). Every other
    path or method goes to the Flask app, and every answer is counted as Flask's are.
    """

    def __init__(self, app: Callable, routes: dict[str, Callable[[bytes], DirectAnswer]], responses: Counter) -> None:
        self.app = app
        self.routes = routes
        self.responses = responses

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        handle = self.routes.get(path)
        if handle is None:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return self._answer(start_response, path, 405, error_body("method not allowed"), [("Allow", "POST")])
        try:
            request_body = _request_body(environ)
        except ValueError:  # a Content-Length that is not a number
            status, body, headers = 400, error_body("Content-Length is not a number"), []
        else:
            status, body, headers = handle(request_body)
        return self._answer(start_response, path, status, body, headers)

    def _answer(
        self, start_response: Callable, path: str, status: int, body: bytes, headers: list[tuple[str, str]]
    ) -> list[bytes]:
        self.responses.labels(path, str(status)).inc()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]


def _request_body(environ: dict[str, Any]) -> bytes:
    stream, length = environ["wsgi.input"], environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    # No length (a chunked body): readable to the end only if the server says so (as Werkzeug).
    return stream.read() if environ.get("wsgi.input_terminated") else b""
