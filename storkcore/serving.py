"""Running a Flask app under gunicorn (gthread worker), plain HTTP or TLS.

The app is built inside each worker (not before the fork), so the cache
threads run where requests are served. Each worker process has its own
caches, and so its own watches on the apiserver: the extender runs one (its
caches are large), the webhook may run more (its caches are small, and TLS
handshakes and JSON are CPU work that one Python process serialises).
"""

from __future__ import annotations

import gc
import logging
import os
import ssl
import threading
from collections.abc import Callable
from typing import Any

from cryptography import x509
from gunicorn.app.base import BaseApplication
from prometheus_client.core import GaugeMetricFamily

from storkcore.logs import gunicorn_log_config

log = logging.getLogger(__name__)


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


class ServedCertificate:
    """Prometheus collector: when the certificate this process serves expires.

    What clients really get, read from the files the server loaded (not from the Secret):
    a renewal that never reached the server shows here as a date that does not move.
    Nothing is exported by a process that serves no TLS.
    """

    expiry: float | None = None  # seconds since the epoch; set by ReloadingTLS in this process

    def collect(self):
        if ServedCertificate.expiry is not None:
            family = GaugeMetricFamily(
                "stork_tls_serving_certificate_expiry_timestamp_seconds",
                "When the certificate this server presents expires.",
            )
            family.add_metric([], ServedCertificate.expiry)
            yield family


class ReloadingTLS:
    """gunicorn `ssl_context` hook: one TLS context, rebuilt when the files change.

    gunicorn asks for a context on every new connection. We stat the certificate
    and key and rebuild only when either changed, so rotated files are served
    without a restart. Connections already open keep the context they started
    with. A half-written pair (certificate and key not matching yet) is not
    loaded: the previous context stays until the pair is whole.
    """

    def __init__(self, certfile: str, keyfile: str, min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.min_version = min_version
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._context: ssl.SSLContext | None = None

    def _files_stamp(self) -> tuple:
        return tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in map(os.stat, (self.certfile, self.keyfile)))

    def context(self) -> ssl.SSLContext:
        try:
            stamp = self._files_stamp()
        except OSError:
            stamp = self._stamp  # files briefly missing during a swap: keep serving
        if stamp == self._stamp and self._context is not None:
            return self._context
        with self._lock:
            if stamp != self._stamp or self._context is None:
                try:
                    self._context = self._build()
                    self._stamp = stamp
                    log.info("TLS certificate loaded", extra={"certfile": self.certfile})
                except (OSError, ssl.SSLError) as err:
                    if self._context is None:
                        raise
                    log.warning("TLS files not loadable yet, keeping the previous ones", extra={"error": str(err)})
            return self._context

    def _build(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = self.min_version
        context.load_cert_chain(certfile=self.certfile, keyfile=self.keyfile)
        with open(self.certfile, "rb") as pem:
            ServedCertificate.expiry = x509.load_pem_x509_certificate(pem.read()).not_valid_after_utc.timestamp()
        return context

    def __call__(self, conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return self.context()


def serve(
    factory: Callable[[], Any],
    bind: str,
    certfile: str | None = None,
    keyfile: str | None = None,
    threads: int = 8,
    log_level: str = "info",
    extra: dict[str, Any] | None = None,
    workers: int = 1,
) -> None:
    options: dict[str, Any] = {
        "bind": [bind],
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 75,
        "timeout": 60,
        "graceful_timeout": 5,  # requests take milliseconds; do not hold a shutdown for idle clients
        "logconfig_dict": gunicorn_log_config(log_level),
        "loglevel": log_level,
        "accesslog": None,
    }
    if certfile:
        options.update(certfile=certfile, keyfile=keyfile, ssl_context=ReloadingTLS(certfile, keyfile or certfile))
    options.update(extra or {})
    _App(factory, options).run()
