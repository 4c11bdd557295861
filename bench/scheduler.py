"""Benchmark: scheduling throughput with and without the extender, on the real control plane.

With N simulated nodes (default 1,000, each with a Longhorn node) and one
Longhorn volume per pod (2 replicas on random nodes), 300 pods go through the
`stork` scheduler, which calls the extender (filter + prioritize, NodeNames
mode, TLS), and 300 pods using the same volumes opt out of stork and go
through `default-scheduler`, which calls nothing. Both are kube-scheduler 1.20
processes with the same settings. Prints pods bound per second and the ratio.

    python bench/scheduler.py [--nodes 1000] [--pods 300]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from localcluster import simulate
from localcluster.cluster import LocalCluster, NodeSpec
from storkcore.kube import Kube, Resource

NAMESPACE = "bench"
PODS = Resource("", "v1", "pods", NAMESPACE)
OPT_OUT = {"stork.libopenstorage.org/disable-admission-controller": "true"}


def in_parallel(work, items, threads: int = 16) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(work, items):
            pass


def populate(cluster: LocalCluster, node_count: int, pod_count: int) -> None:
    nodes = [NodeSpec(f"n{i:04d}", zone=f"zone-{i % 3}", rack=f"rack-{i % 12}") for i in range(node_count)]
    kube = cluster.kube()

    def add(indexed: tuple[int, NodeSpec]) -> None:
        i, node = indexed
        simulate.add_node(kube, node.name, node.labels(), internal_ip=f"10.{i // 250}.{i % 250}.1")
        simulate.add_longhorn_node(kube, node.name, zone=node.zone)

    in_parallel(add, list(enumerate(nodes)))
    simulate.longhorn_class(kube)
    cluster.ensure_namespace(NAMESPACE)
    rng = random.Random(7)

    def volume(i: int) -> None:
        replicas = rng.sample([n.name for n in nodes], 2)
        simulate.add_longhorn_volume(kube, f"vol-{i}", replicas)
        simulate.longhorn_claim(kube, NAMESPACE, f"data-{i}", f"vol-{i}")

    in_parallel(volume, range(pod_count))
    for i in range(pod_count):
        simulate.wait_bound_claim(kube, NAMESPACE, f"data-{i}", timeout=300)


def run(kube: Kube, prefix: str, pod_count: int, annotations: dict[str, str] | None) -> tuple[float, str]:
    def create(i: int) -> None:
        body = simulate.pod_template([f"data-{i}"], annotations)
        body["metadata"]["name"] = f"{prefix}-{i}"
        kube.create(PODS, NAMESPACE, {"apiVersion": "v1", "kind": "Pod", **body})

    started = time.monotonic()
    in_parallel(create, range(pod_count))
    deadline = started + 600
    while time.monotonic() < deadline:
        pods = [p for p in kube.list(PODS)[0] if p["metadata"]["name"].startswith(prefix + "-")]
        if len(pods) == pod_count and all(p["spec"].get("nodeName") for p in pods):
            schedulers = {p["spec"]["schedulerName"] for p in pods}
            return time.monotonic() - started, ",".join(sorted(schedulers))
        time.sleep(0.2)
    raise TimeoutError(f"{prefix}: pods not all bound in 10 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=300)
    args = parser.parse_args()
    cluster = LocalCluster.create()
    try:
        cluster.start()
        cluster.add_stork("longhorn")
        setup_started = time.monotonic()
        populate(cluster, args.nodes, args.pods)
        print(
            f"cluster: {args.nodes} nodes, {args.pods} bound Longhorn claims ({time.monotonic() - setup_started:.0f} s)"
        )
        kube = cluster.kube()
        with_extender, scheduler_a = run(kube, "stork", args.pods, None)
        without, scheduler_b = run(kube, "plain", args.pods, OPT_OUT)
    finally:
        cluster.stop()
    rows = [
        (
            scheduler_a,
            "extender (filter + prioritize)",
            args.pods,
            f"{with_extender:.1f}",
            f"{args.pods / with_extender:.1f}",
        ),
        (scheduler_b, "none", args.pods, f"{without:.1f}", f"{args.pods / without:.1f}"),
    ]
    print_table(["scheduler", "calls", "pods", "seconds", "pods/s"], rows)
    print(f"ratio (with extender / without): {without / with_extender:.2f}")


if __name__ == "__main__":
    main()
