"""Running a Flask app under gunicorn (gthread worker), plain HTTP or TLS; or under granian.

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
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from gunicorn.app.base import BaseApplication
from prometheus_client.core import GaugeMetricFamily

from storkcore.logs import gunicorn_log_config
from storkcore.processmetrics import share_between_workers, use_shared_values

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
        use_shared_values()  # before the app makes its metrics (a no-op with one worker)
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
        ServedCertificate.expiry = _expiry(self.certfile)
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
    if workers > 1:
        share_between_workers()  # one /metrics view whichever worker a scrape reaches
    _App(factory, options).run()


# -- granian (opt-in) -------------------------------------------------------------------

RESPAWN_SECONDS = 60.0  # how long old and new workers overlap after a certificate change
READY_SECONDS = 600.0  # longest a new worker waits for its caches before it serves anyway
WATCH_SECONDS = 5.0  # how often the certificate files are checked
# Set in granian's main process before it respawns workers; forked workers inherit it. The first
# worker serves at once (as under gunicorn, /readyz says when caches are synced): blocking it
# would fail its liveness probe on a large cluster.
_certificate_changed = threading.Event()


def serve_granian(
    factory: Callable[[], Any],
    bind: str,
    certfile: str | None = None,
    keyfile: str | None = None,
    threads: int = 8,
    workers: int = 1,
    ready_path: str = "/readyz",
    respawn_seconds: float = RESPAWN_SECONDS,
    watch_seconds: float = WATCH_SECONDS,
    ready_seconds: float = READY_SECONDS,
) -> None:
    """Serve a Flask app under granian (HTTP and TLS in Rust; bench/README.md has the numbers).

    Granian loads its certificate once per worker. When the files change (a renewal
    written into the mounted Secret), the main process re-reads them and respawns the
    workers one by one: each new worker builds the app and serves only once `ready_path`
    answers 200 (caches synced, at most `ready_seconds`); the old one keeps serving for
    `respawn_seconds`, then stops, closing its connections, so every client reconnects to the
    new certificate.
    """
    from pathlib import Path

    from granian.constants import HTTPModes, Interfaces, SSLProtocols
    from granian.server import Server

    host, _, port = bind.rpartition(":")
    tls: dict[str, Any] = {}
    if certfile:
        tls = {"ssl_cert": Path(certfile), "ssl_key": Path(keyfile or certfile), "ssl_protocol_min": SSLProtocols.tls12}
    server = Server(
        "stork",  # granian wants a target name; the loader below builds the app
        address=host.strip("[]") or "0.0.0.0",
        port=int(port),
        interface=Interfaces.WSGI,
        # HTTP/1.1 only: over TLS granian would offer HTTP/2, which kube-scheduler's Go client takes
        # and which costs that client more CPU per call (bench/README.md, "HTTP/1.1 or HTTP/2").
        http=HTTPModes.http1,
        workers=workers,
        blocking_threads=threads,
        respawn_interval=respawn_seconds,
        log_enabled=False,
        **tls,
    )

    def load(*_: Any) -> Any:
        use_shared_values()  # before the app makes its metrics
        app = factory()
        tune_gc()
        if _certificate_changed.is_set():  # a replacement: the old worker serves meanwhile
            _wait_ready(app, ready_path, ready_seconds)
        if certfile:
            ServedCertificate.expiry = _expiry(certfile)
        return app

    if certfile or workers > 1:
        # A renewal runs two workers for `respawn_seconds`: one /metrics view whichever answers,
        # counters that do not reset (bench/metric_values.py: 3 us more per extender request).
        share_between_workers()
    if certfile:
        threading.Thread(
            target=_reload_on_change, args=(server, tls, watch_seconds), name="certificate watch", daemon=True
        ).start()
    server.serve(target_loader=load, wrap_loader=False)


def _wait_ready(app: Any, path: str, seconds: float) -> None:
    client = app.test_client()
    deadline = time.monotonic() + seconds
    while client.get(path).status_code != 200:
        if time.monotonic() > deadline:
            log.warning("not ready in time, serving anyway", extra={"waited_s": seconds})
            return
        time.sleep(0.2)


def _expiry(certfile: str) -> float:
    with open(certfile, "rb") as pem:
        return x509.load_pem_x509_certificate(pem.read()).not_valid_after_utc.timestamp()


def _reload_on_change(server: Any, tls: dict[str, Any], every: float) -> None:
    files = ReloadingTLS(str(tls["ssl_cert"]), str(tls["ssl_key"]))
    stamp = files._files_stamp()
    while True:
        time.sleep(every)
        try:
            current = files._files_stamp()
            if current == stamp:
                continue
            files._build()  # a half-written pair fails here: try again at the next check
        except (OSError, ssl.SSLError) as err:
            log.warning("TLS files not loadable yet", extra={"error": str(err)})
            continue
        stamp = current
        # Paths are resolved again: behind a Secret volume's symlinks they point to new files.
        server.build_ssl_context(tls["ssl_cert"], tls["ssl_key"], None, tls["ssl_protocol_min"], None, [], False)
        log.info("TLS certificate changed, respawning the worker", extra={"certfile": str(tls["ssl_cert"])})
        _certificate_changed.set()
        server.signal_handler_reload()
