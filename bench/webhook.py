"""Benchmark: the mutating webhook under gunicorn over TLS with keep-alive.

AdmissionReviews of a pod with 3 Longhorn claims are sent at concurrency 1, 16
and 64 (one keep-alive TLS connection per client thread). The floor is an empty
handler under the same server and TLS settings that parses the review and
allows it: the cost of TLS, HTTP and JSON that any webhook pays.

    python bench/webhook.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ms, percentile, print_table, start_server, stop_server

CLAIMS = 3


def build_world():
    from storkcore.drivers.longhorn import PROVISIONER
    from tests.builders import World, pvc, storage_class

    world = World("longhorn")
    world.add(storage_class("longhorn", PROVISIONER))
    for i in range(CLAIMS):
        world.add(pvc(f"data-{i}", volume=f"pv-{i}"))
    return world


def review_body() -> bytes:
    from tests.builders import pod

    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "bench",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default",
                "operation": "CREATE",
                "object": pod("", [f"data-{i}" for i in range(CLAIMS)], namespace=""),
            },
        }
    )


def serve(kind: str, port: int, tls_dir: str, workers: int) -> None:
    from flask import Flask, Response, request

    from storkcore.serving import serve as run
    from webhook.admission import AdmissionSettings
    from webhook.app import create_app
    from webhook.review import allow, parse_review

    def webhook():
        return create_app(build_world().driver, AdmissionSettings())

    def floor():
        app = Flask("floor")

        @app.get("/livez")
        def livez():
            return "ok"

        @app.post("/mutate")
        def mutate():
            return Response(orjson.dumps(allow(parse_review(request.get_data()))), mimetype="application/json")

        return app

    run(
        webhook if kind == "webhook" else floor,
        f"127.0.0.1:{port}",
        f"{tls_dir}/tls.crt",
        f"{tls_dir}/tls.key",
        log_level="error",
        workers=workers,
    )


def load(port: int, ca: str, concurrency: int, seconds: float, body: bytes) -> tuple[list[float], float]:
    context = ssl.create_default_context(cafile=ca)
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client() -> None:
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=30)

        def post() -> None:
            conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")

        # One request before waiting for the others: an idle new connection would
        # hold a server thread (gthread reads the first request in a thread).
        post()
        mine = []
        start.wait()
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            post()
            mine.append(time.perf_counter() - began)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds + 0.5
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, len(latencies) / (time.perf_counter() - began)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read("*a")
"""


def load_wrk(port: int, concurrency: int, seconds: float, body: bytes) -> tuple[dict[int, float], float, int]:
    """The same load from wrk (C, so the client takes little of the machine's two cores)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "body.json").write_bytes(body)
        Path(tmp, "post.lua").write_text(WRK_SCRIPT)
        run = subprocess.run(
            [
                "wrk",
                "-t",
                str(min(concurrency, 2)),
                "-c",
                str(concurrency),
                "-d",
                f"{seconds:.0f}s",
                "--latency",
                "-s",
                f"{tmp}/post.lua",
                f"https://localhost:{port}/mutate",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            env={**os.environ, "BENCH_BODY": f"{tmp}/body.json"},
        )
    out = run.stdout
    if run.returncode != 0 or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed:\n{out}{run.stderr}")
    percentiles = {int(m[0]): _seconds(m[1]) for m in re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)$", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    return percentiles, rps, count


def _seconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 16, 64])
    parser.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (wrk when installed: apt-get install wrk)",
    )
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes (stork-webhook --workers)")
    parser.add_argument("--serve", choices=["webhook", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.port, args.tls_dir, args.workers)

    from certs import authority
    from tests.processes import free_port

    tls_dir = tempfile.mkdtemp(prefix="stork-bench-tls-")
    ca = authority.create_ca()
    authority.save(Path(tls_dir), ca, authority.create_serving(ca, ["localhost"]))
    body = review_body()
    results: dict[str, dict[int, tuple[list[float], float]]] = {}
    for kind in ("webhook", "floor"):
        port = free_port()
        proc = start_server(
            [
                "bench/webhook.py",
                "--serve",
                kind,
                "--port",
                str(port),
                "--tls-dir",
                tls_dir,
                "--workers",
                str(args.workers),
            ],
            f"https://localhost:{port}/livez",
            verify=f"{tls_dir}/ca.crt",
        )
        try:
            for c in args.concurrency:
                if args.client == "wrk":
                    results.setdefault(kind, {})[c] = load_wrk(port, c, args.seconds, body)
                else:
                    lat, rps = load(port, f"{tls_dir}/ca.crt", c, args.seconds, body)
                    results.setdefault(kind, {})[c] = (
                        {50: percentile(lat, 50), 99: percentile(lat, 99)},
                        rps,
                        len(lat),
                    )
        finally:
            stop_server(proc)
    rows = []
    for c in args.concurrency:
        lat, rps, n = results["webhook"][c]
        floor_lat, floor_rps, _ = results["floor"][c]
        rows.append(
            (
                c,
                n,
                ms(lat[50]),
                ms(lat[99]),
                f"{rps:7.0f}",
                ms(floor_lat[50]),
                ms(floor_lat[99]),
                f"{floor_rps:7.0f}",
                f"{lat[99] / floor_lat[99]:5.2f}x",
            )
        )
    print(
        f"mutating webhook over TLS, keep-alive, pod with {CLAIMS} Longhorn claims, {args.seconds:.0f} s per level,"
        f" {args.workers} worker(s), client {args.client}"
    )
    print_table(["conc", "n", "p50 ms", "p99 ms", "req/s", "floor p50", "floor p99", "floor req/s", "p99 ratio"], rows)


if __name__ == "__main__":
    main()
