"""A small threaded HTTP server for the SIMULATED storage APIs (Portworx, LINSTOR).

They stand in for systems that cannot run here. Each serves a Flask app in a
thread on 127.0.0.1 and has knobs a test turns: answer slowly (`latency`), fail
every call (`failure`), and a log of the calls it answered (`calls`), so a test
can count storage API calls.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Self

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass  # a test's output is not the place for an access log


class SimulatedServer:
    def __init__(self, app: Flask, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.app = app
        self.latency = 0.0  # seconds before each answer
        self.failure: Callable[[], Response] | None = None  # when set, every call gets this answer
        self.calls: Counter[str] = Counter()  # "GET /v1/..." (path without the query)
        self._lock = threading.Lock()
        # First, so that every call is counted and slowed, also those the app then refuses.
        app.before_request_funcs.setdefault(None, []).insert(0, self._before)
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, app, threaded=True, ssl_context=tls, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"simulated-{app.name}", daemon=True
        )

    def start(self) -> SimulatedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SimulatedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, prefix: str = "") -> int:
        """Calls answered whose "METHOD /path" starts with prefix."""
        with self._lock:
            return sum(n for call, n in self.calls.items() if call.startswith(prefix))

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()

    def _before(self) -> Response | None:
        with self._lock:
            self.calls[f"{request.method} {request.path}"] += 1
        if self.latency:
            time.sleep(self.latency)
        if self.failure is not None:
            return self.failure()
        return None


class SimulatedSystem:
    """A simulated storage system behind its SimulatedServer: start, stop, and where it listens."""

    server: SimulatedServer

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
