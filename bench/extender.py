"""Benchmark: extender filter and prioritize latency at 1,000 and 5,000 nodes.

The extender runs under granian (as `stork-extender` does; `--server gunicorn`
for the other server) over in-memory
Longhorn state (`--driver longhorn`), or over the SIMULATED Portworx or
LINSTOR server of localcluster/ (`--driver pxd|linstor`, the server runs in
this process): nodes in 3 zones x 10 racks, a pod with 3 volumes of 3
replicas each. Requests are sent one at a time over a keep-alive connection,
in both request modes. The floor is an empty Flask handler served the same way
that parses the same body and sends a reply of the same shape: the cost of
HTTP plus JSON that any extender pays under that server. For pxd and linstor
the table also counts the storage API calls the simulated server answered
while the requests were measured (the driver's background refresh is set to
an hour so that any call counted comes from a request).

    python bench/extender.py [--requests 300] [--driver longhorn|pxd|linstor] [--server granian|gunicorn]
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


def layout(node_count: int) -> tuple[list[str], dict[str, dict[str, str]], dict[str, list[str]]]:
    from tests.builders import topology_labels

    names = [f"node-{i:05d}" for i in range(node_count)]
    labels = {n: topology_labels(zone=f"zone-{i % 3}", rack=f"rack-{i % 10}") for i, n in enumerate(names)}
    volumes = {f"vol{v}": [names[(v * 7 + r * 13) % node_count] for r in range(REPLICAS)] for v in range(VOLUMES)}
    return names, labels, volumes


def build_world(node_count: int, driver: str = "longhorn", storage_url: str = ""):
    """The Kubernetes side in memory; for pxd and linstor, storage behind storage_url."""
    from tests.builders import World, k8s_node, longhorn_world, pvc, storage_class
    from tests.drivers import LinstorBackend, PortworxBackend

    names, labels, volumes = layout(node_count)
    if driver == "longhorn":
        return longhorn_world(labels, volumes), names
    backend = {"pxd": PortworxBackend, "linstor": LinstorBackend}[driver]()
    endpoint = {"pxd": "px_endpoint", "linstor": "linstor_controllers"}[driver]
    world = World(driver, node_refresh_interval=3600, volume_refresh_interval=3600, **{endpoint: storage_url})
    world.add(storage_class("fast", backend.provisioner))
    for i, name in enumerate(names):
        world.add(k8s_node(name, labels=labels[name], internal_ips=[f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"]))
    for volume in volumes:
        world.add(backend.pv(volume), pvc(f"pvc-{volume}", storage_class_name="fast", volume=volume))
    return world, names


def simulated_storage(driver: str, node_count: int):
    """The storage system the pxd or linstor extender reads, with the same layout."""
    from localcluster.simulated_linstor import SimulatedLinstor
    from localcluster.simulated_portworx import SimulatedPortworx

    names, labels, volumes = layout(node_count)
    if driver == "pxd":
        px = SimulatedPortworx()
        for name in names:
            px.add_node(f"px-{name}", scheduler_name=name, hostname=name, labels=labels[name])
        for volume, holders in volumes.items():
            px.add_volume(volume, [f"px-{h}" for h in holders])
        return px.start()
    ls = SimulatedLinstor()
    for name in names:
        ls.add_node(name, k8s_hostname=name, labels=labels[name])
    for volume, holders in volumes.items():
        for holder in holders:
            ls.add_resource(volume, holder)
    return ls.start()


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


def serve_extender(node_count: int, port: int, driver: str, storage_url: str, server: str) -> None:
    from extender.app import create_app
    from storkcore.events import EventRecorder

    def factory():
        world, _ = build_world(node_count, driver, storage_url)
        world.driver.start()  # as stork-extender: the first node listing comes from the background thread
        return create_app(world.driver, EventRecorder(None, "bench"))

    serve_with(server, factory, port)


def serve_floor(port: int, server: str) -> None:
    from bench.servers import floor_app

    serve_with(server, floor_app, port)


def serve_with(server: str, factory, port: int) -> None:
    from storkcore.serving import serve, serve_granian

    if server == "granian":
        serve_granian(factory, f"127.0.0.1:{port}")
    else:
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
    parser.add_argument("--driver", choices=["longhorn", "pxd", "linstor"], default="longhorn")
    parser.add_argument("--storage-url", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--serve", choices=["extender", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--node-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "extender":
        return serve_extender(args.node_count, args.port, args.driver, args.storage_url or "", args.server)
    if args.serve == "floor":
        return serve_floor(args.port, args.server)

    from tests.processes import free_port

    rows = []
    storage_calls: dict[int, int] = {}
    for node_count in args.nodes:
        storage = simulated_storage(args.driver, node_count) if args.driver != "longhorn" else None
        world, names = build_world(node_count, args.driver, storage.url if storage else "")
        bodies = request_bodies(world, names)
        timings = {}
        try:
            for kind in ("extender", "floor"):
                port = free_port()
                command = ["bench/extender.py", "--serve", kind, "--server", args.server, "--port", str(port)]
                command += ["--node-count", str(node_count)]
                if storage is not None:
                    command += ["--driver", args.driver, "--storage-url", storage.url]
                health = "readyz" if kind == "extender" else "livez"  # ready: caches synced, storage answered
                proc = start_server(command, f"http://127.0.0.1:{port}/{health}")
                try:
                    if storage is not None and kind == "extender":
                        warm_up(port, bodies)  # first use loads the volumes: not part of the measurement
                        storage.server.reset_counts()
                    timings[kind] = measure(port, bodies, args.requests)
                    if storage is not None and kind == "extender":
                        storage_calls[node_count] = storage.server.count()
                finally:
                    stop_server(proc)
        finally:
            if storage is not None:
                storage.stop()
        for (mode, verb), (samples, server) in timings["extender"].items():
            floor, _ = timings["floor"][(mode, verb)]
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            f50, f99 = percentile(floor, 50), percentile(floor, 99)
            app50, app99 = percentile(server, 50), percentile(server, 99)
            ratios = (f"{p50 / f50:5.2f}x", f"{p99 / f99:5.2f}x")
            rows.append((node_count, mode, verb, len(samples), *map(ms, (p50, p99, app50, app99, f50, f99)), *ratios))
    print(
        f"extender latency (ms), driver {args.driver}, under {args.server}, sequential keep-alive requests, "
        f"{VOLUMES} volumes x {REPLICAS} replicas"
    )
    print("p50/p99: as the client sees it; app: the extender's own time (Server-Timing); floor: empty handler")
    header = ["nodes", "mode", "verb", "n", "p50", "p99", "app p50", "app p99", "floor p50", "floor p99"]
    print_table([*header, "p50 ratio", "p99 ratio"], rows)
    for node_count, calls in storage_calls.items():
        print(f"storage API calls answered by the simulated {args.driver} server during the measured requests "
              f"at {node_count} nodes: {calls}")  # fmt: skip


def warm_up(port: int, bodies: dict[str, bytes]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for body in bodies.values():
        for verb in ("filter", "prioritize"):
            conn.request("POST", f"/{verb}", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
    conn.close()


if __name__ == "__main__":
    main()
