"""A small app served by `storkcore.serving.serve_granian`, for test_granian_serving.py.

`/readyz` answers 503 for the first second of each worker (as the extender does until
its caches are synced); `/who` names the worker process that answered and counts it in
`answers_total`, which `/metrics` serves as the extender serves its own.
"""

from __future__ import annotations

import os
import sys
import time

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, generate_latest

from storkcore.processmetrics import exposition_registry
from storkcore.serving import serve_granian


def factory() -> Flask:
    app = Flask("granian-test")
    born = time.monotonic()
    registry = CollectorRegistry()
    answered = Counter("answers", "/who answers", registry=registry)

    @app.get("/metrics")
    def metrics():
        return generate_latest(exposition_registry(registry)), 200, {"Content-Type": "text/plain"}

    @app.get("/readyz")
    def readyz():
        return ("ok", 200) if time.monotonic() - born > 1.0 else ("warming up", 503)

    @app.get("/who")
    def who():
        answered.inc()
        ready = time.monotonic() - born > 1.0
        return {"pid": os.getpid(), "ready": ready}

    return app


if __name__ == "__main__":
    bind, certfile, keyfile = sys.argv[1:4]
    serve_granian(factory, bind, certfile, keyfile, respawn_seconds=2, watch_seconds=0.5)
