"""Benchmark: extender filter and prioritize latency at 1,000 and 5,000 nodes.

The extender runs under gunicorn (as `stork-extender` does) over in-memory
Longhorn state: nodes in 3 zones x 10 racks, a pod with 3 volumes of 3
replicas each. Requests are sent one at a time over a keep-alive connection,
in both request modes. The floor is an empty Flask handler under the same
gunicorn settings that parses the same body and sends a reply of the same
shape: the cost of HTTP plus JSON that any extender pays.

    python bench/extender.py [--requests 300]
"""

from __future__ import annotations

import argparse
import http.client
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ms, percentile, print_table, start_server, stop_server, timed

VOLUMES = 3
REPLICAS = 3


def build_world(node_count: int):
    from tests.builders import longhorn_world, topology_labels

    names = [f"node-{i:05d}" for i in range(node_count)]
    layout = {n: topology_labels(zone=f"zone-{i % 3}", rack=f"rack-{i % 10}") for i, n in enumerate(names)}
    volumes = {f"vol{v}": [names[(v * 7 + r * 13) % node_count] for r in range(REPLICAS)] for v in range(VOLUMES)}
    return longhorn_world(layout, volumes), names


def request_bodies(world, names: list[str]) -> dict[str, bytes]:
    from storkcore.kube import NODES
    from tests.builders import pod

    the_pod = pod("bench", [f"pvc-vol{v}" for v in range(VOLUMES)])
    store = world.cluster.store(NODES)
    return {
        "names": orjson.dumps({"Pod": the_pod, "Nodes": None, "NodeNames": names}),
        "nodes": orjson.dumps(
            {"Pod": the_pod, "Nodes": {"items": [store.get("", n) for n in names]}, "NodeNames": None}
        ),
    }


def serve_extender(node_count: int, port: int) -> None:
    from extender.app import create_app
    from storkcore.events import EventRecorder
    from storkcore.serving import serve

    def factory():
        world, _ = build_world(node_count)
        return create_app(world.driver, EventRecorder(None, "bench"))

    serve(factory, f"127.0.0.1:{port}", log_level="error")


def serve_floor(port: int) -> None:
    from flask import Flask, Response, request

    from extender.protocol import filter_result, parse_args, priority_list
    from storkcore.serving import serve

    def factory():
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
            return Response(priority_list(args.names, [0] * len(args.names)), mimetype="application/json")

        return app

    serve(factory, f"127.0.0.1:{port}", log_level="error")


def measure(port: int, bodies: dict[str, bytes], count: int) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """Client-observed latency and, when the server reports it, its own time (Server-Timing)."""
    results = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    for mode, body in bodies.items():
        for verb in ("filter", "prioritize"):
            server: list[float] = []

            def call(verb=verb, body=body, server=server):
                conn.request("POST", f"/{verb}", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{verb}: HTTP {resp.status}")
                timing = resp.getheader("Server-Timing", "")
                if "dur=" in timing:
                    server.append(float(timing.split("dur=")[1]) / 1000)

            samples = timed(call, count if mode == "names" else max(30, count // 5))
            results[(mode, verb)] = (samples, server[-len(samples) :])
    conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--nodes", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--serve", choices=["extender", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--node-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "extender":
        return serve_extender(args.node_count, args.port)
    if args.serve == "floor":
        return serve_floor(args.port)

    from tests.processes import free_port

    rows = []
    for node_count in args.nodes:
        world, names = build_world(node_count)
        bodies = request_bodies(world, names)
        timings = {}
        for kind in ("extender", "floor"):
            port = free_port()
            proc = start_server(
                ["bench/extender.py", "--serve", kind, "--node-count", str(node_count), "--port", str(port)],
                f"http://127.0.0.1:{port}/livez",
            )
            try:
                timings[kind] = measure(port, bodies, args.requests)
            finally:
                stop_server(proc)
        for (mode, verb), (samples, server) in timings["extender"].items():
            floor, _ = timings["floor"][(mode, verb)]
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            f50, f99 = percentile(floor, 50), percentile(floor, 99)
            app50, app99 = percentile(server, 50), percentile(server, 99)
            ratios = (f"{p50 / f50:5.2f}x", f"{p99 / f99:5.2f}x")
            rows.append((node_count, mode, verb, len(samples), *map(ms, (p50, p99, app50, app99, f50, f99)), *ratios))
    print(f"extender latency (ms), sequential keep-alive requests, {VOLUMES} volumes x {REPLICAS} replicas")
    print("p50/p99: as the client sees it; app: the extender's own time (Server-Timing); floor: empty handler")
    header = ["nodes", "mode", "verb", "n", "p50", "p99", "app p50", "app p99", "floor p50", "floor p99"]
    print_table([*header, "p50 ratio", "p99 ratio"], rows)


if __name__ == "__main__":
    main()
