"""Benchmark: the HTTP server under the Flask apps, side by side in one run.

The same apps, under each server: `floor` (an empty handler that parses an
extender request and sends a reply of the same shape, answered below Flask as the
extender's verbs are: storkcore.web.DirectRoutes), `floor-flask` (the same handler
as Flask routes) and `extender` (the real extender app over in-memory Longhorn
state, as bench/extender.py builds it).
Requests are sent one at a time over one keep-alive connection, as
kube-scheduler sends them, with 1,000 and 5,000 node names, over plain HTTP and
over TLS. Servers:

- gunicorn-gthread: gunicorn's threaded worker (stork-py's setting before this benchmark);
- gunicorn-sync: gunicorn's sync worker (no keep-alive: a connection per request);
- granian: the Rust WSGI server (blocking threads for the app);
- waitress: a pure-Python threaded WSGI server (no TLS).

    python bench/servers.py [--requests 300] [--nodes 1000 5000] [--servers ...] [--apps ...] [--names 420]
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ms, percentile, print_table, start_server, stop_server, timed

SERVERS = ("gunicorn-gthread", "gunicorn-sync", "granian", "waitress")
APPS = ("floor", "floor-flask", "extender")
THREADS = 8


# -- the apps (factories the servers import) -----------------------------------------


def floor_app():
    """The empty handler, answered the way the extender answers its verbs (below Flask)."""
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from extender.protocol import filter_result, parse_args, priority_list
    from storkcore.web import DirectRoutes, add_health_routes

    def filter_verb(body: bytes):
        args = parse_args(body)
        return 200, filter_result(args, list(range(len(args.names))), {}), []

    def prioritize_verb(body: bytes):
        args = parse_args(body)
        return 200, priority_list(args.names, [5] * len(args.names)), []

    app = Flask("floor")
    responses = add_health_routes(app, lambda: True, CollectorRegistry())
    app.wsgi_app = DirectRoutes(app.wsgi_app, {"/filter": filter_verb, "/prioritize": prioritize_verb}, responses)
    return app


def floor_flask_app():
    """The empty handler as Flask routes (how the extender answered before storkcore.web.DirectRoutes)."""
    from flask import Flask, Response, request

    from extender.protocol import filter_result, parse_args, priority_list

    app = Flask("floor")

    @app.get("/livez")
    def livez():
        return "ok"

    @app.post("/filter")
    def filter_verb():
        args = parse_args(request.get_data())
        return Response(filter_result(args, list(range(len(args.names))), {}), mimetype="application/json")

    @app.post("/prioritize")
    def prioritize_verb():
        args = parse_args(request.get_data())
        return Response(priority_list(args.names, [5] * len(args.names)), mimetype="application/json")

    return app


def extender_app():
    from bench.extender import build_world
    from extender.app import create_app
    from storkcore.events import EventRecorder
    from storkcore.serving import tune_gc

    world, _ = build_world(int(os.environ["BENCH_NODES"]))
    app = create_app(world.driver, EventRecorder(None, "bench"))
    tune_gc()
    return app


# -- running one app under one server ---------------------------------------------------


def serve(server: str, app_name: str, port: int, certfile: str, keyfile: str) -> None:
    factory = {"floor": floor_app, "floor-flask": floor_flask_app, "extender": extender_app}[app_name]
    if server.startswith("gunicorn"):
        from storkcore.serving import serve as gunicorn_serve

        extra = {"worker_class": "sync"} if server == "gunicorn-sync" else {}
        gunicorn_serve(factory, f"127.0.0.1:{port}", certfile or None, keyfile or None, THREADS, "error", extra)
    elif server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        tls = {"ssl_cert": Path(certfile), "ssl_key": Path(keyfile)} if certfile else {}
        Granian(
            f"bench.servers:{factory.__name__}",
            address="127.0.0.1",
            port=port,
            interface=Interfaces.WSGI,
            factory=True,
            workers=1,
            blocking_threads=THREADS,
            log_enabled=False,
            **tls,
        ).serve()
    elif server == "waitress":
        import waitress

        waitress.serve(factory(), host="127.0.0.1", port=port, threads=THREADS, _quiet=True)


def measure(
    port: int, bodies: dict[str, bytes], count: int, ca_file: str, server_pid: int
) -> dict[str, tuple[list[float], float]]:
    """Per verb: client-observed latencies, and the server's CPU per request (ms, its process tree)."""
    from bench.scheduler import cpu_seconds

    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    results = {}
    for verb in ("filter", "prioritize"):
        conn = (
            http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
            if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        )

        def call(verb=verb, conn=conn):
            conn.request("POST", f"/{verb}", body=bodies["names"], headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{verb}: HTTP {resp.status}")

        for _ in range(20):  # warm-up, outside the CPU count
            call()
        cpu_before = cpu_seconds(server_pid)
        samples = timed(call, count, warmup=0)
        results[verb] = (samples, (cpu_seconds(server_pid) - cpu_before) * 1000 / count)
        conn.close()
    return results


def certificates(folder: Path) -> tuple[str, str, str]:
    from certs.authority import create_ca, create_serving

    ca = create_ca("bench CA")
    serving = create_serving(ca, ["localhost"], ips=["127.0.0.1"])
    paths = [folder / "ca.crt", folder / "tls.crt", folder / "tls.key"]
    for path, data in zip(paths, (ca.cert_pem(), serving.cert_pem(), serving.key_pem()), strict=True):
        path.write_bytes(data)
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--nodes", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--servers", nargs="*", default=list(SERVERS), choices=SERVERS)
    parser.add_argument(
        "--names", type=int, default=0, help="node names per request (default: all; kube-scheduler sends ~420 of 1,000)"
    )
    parser.add_argument("--apps", nargs="*", default=list(APPS), choices=APPS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--app", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certfile", default="", help=argparse.SUPPRESS)
    parser.add_argument("--keyfile", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.app, args.port, args.certfile, args.keyfile)

    from bench.extender import build_world, request_bodies
    from tests.processes import free_port

    folder = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    ca_file, certfile, keyfile = certificates(folder)
    rows = []
    for node_count in args.nodes:
        world, names = build_world(node_count)
        bodies = request_bodies(world, names[: args.names or None])
        os.environ["BENCH_NODES"] = str(node_count)
        for tls in (False, True):
            for app_name in args.apps:
                for server in args.servers:
                    if tls and server == "waitress":
                        continue
                    port = free_port()
                    command = ["bench/servers.py", "--serve", server, "--app", app_name, "--port", str(port)]
                    if tls:
                        command += ["--certfile", certfile, "--keyfile", keyfile]
                    health = f"{'https' if tls else 'http'}://127.0.0.1:{port}/livez"
                    proc = start_server(command, health, verify=ca_file if tls else True)
                    try:
                        samples = measure(port, bodies, args.requests, ca_file if tls else "", proc.pid)
                    finally:
                        stop_server(proc)
                    for verb, (timings, cpu_ms) in samples.items():
                        p50, p99 = percentile(timings, 50), percentile(timings, 99)
                        scheme = "tls" if tls else "http"
                        rows.append((node_count, scheme, app_name, verb, server, ms(p50), ms(p99), f"{cpu_ms:.2f}"))
                    print(f"{node_count} {'tls' if tls else 'http'} {app_name} {server}: done", file=sys.stderr)
    print(f"latency (ms) per request, sequential keep-alive, NodeNames mode, {args.requests} requests each")
    print("cpu: the server's CPU time per request (user + system, every process of the server)")
    print_table(["nodes", "scheme", "app", "verb", "server", "p50", "p99", "cpu"], rows)


if __name__ == "__main__":
    main()
