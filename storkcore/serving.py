"""Running a Flask app under gunicorn (gthread worker), plain HTTP or TLS.

One worker process with threads: the watch caches live in the worker, and a
second process would only duplicate every watch against the apiserver.
The app is built inside the worker (not before the fork), so the cache
threads run where requests are served.
"""

from __future__ import annotations

import gc
import ssl
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from storkcore.logs import gunicorn_log_config


class _App(BaseApplication):
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        app = self.factory()
        tune_gc()
        return app


def tune_gc() -> None:
    """Collect garbage less often than Python's default (every 700 allocations).

    A request parses thousands of objects (a Nodes-mode body, a Node list) while
    the caches hold hundreds of thousands; with the defaults, collections during
    one parse cost several times the parse itself (measured: 80 ms instead of
    20 ms for a 5,000-node body). Objects alive at start-up are frozen out of
    collection altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def tls_context_hook(min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> Callable[..., ssl.SSLContext]:
    """gunicorn `ssl_context` hook: the default context, raised to a TLS floor."""

    def hook(conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default_ssl_context_factory()
        context.minimum_version = min_version
        return context

    return hook


def serve(
    factory: Callable[[], Any],
    bind: str,
    certfile: str | None = None,
    keyfile: str | None = None,
    threads: int = 8,
    log_level: str = "info",
    extra: dict[str, Any] | None = None,
) -> None:
    options: dict[str, Any] = {
        "bind": [bind],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 75,
        "timeout": 60,
        "graceful_timeout": 10,
        "logconfig_dict": gunicorn_log_config(log_level),
        "loglevel": log_level,
        "accesslog": None,
    }
    if certfile:
        options.update(certfile=certfile, keyfile=keyfile, ssl_context=tls_context_hook())
    options.update(extra or {})
    _App(factory, options).run()
