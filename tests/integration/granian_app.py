"""A small app served by `storkcore.serving.serve_granian`, for test_granian_serving.py.

`/readyz` answers 503 for the first second of each worker (as the extender does until
its caches are synced); `/who` names the worker process that answered.
"""

from __future__ import annotations

import os
import sys
import time

from flask import Flask

from storkcore.serving import serve_granian


def factory() -> Flask:
    app = Flask("granian-test")
    born = time.monotonic()

    @app.get("/readyz")
    def readyz():
        return ("ok", 200) if time.monotonic() - born > 1.0 else ("warming up", 503)

    @app.get("/who")
    def who():
        ready = time.monotonic() - born > 1.0
        return {"pid": os.getpid(), "ready": ready}

    return app


if __name__ == "__main__":
    bind, certfile, keyfile = sys.argv[1:4]
    serve_granian(factory, bind, certfile, keyfile, respawn_seconds=2, watch_seconds=0.5)
