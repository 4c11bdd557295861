"""Benchmark: scheduling throughput with and without the extender, on the real control plane.

With N simulated nodes (default 1,000, each with a Longhorn node) and one
Longhorn volume per pod (2 replicas on random nodes), 300 pods go through the
`stork` scheduler, which calls the extender (filter + prioritize, NodeNames
mode, TLS), and 300 pods using the same volumes opt out of stork and go
through `default-scheduler`, which calls nothing. Both are kube-scheduler 1.20
processes with the same settings. Runs the two in alternating rounds (stork, default, default,
stork, ...; 3 each by default, after a warm-up round) so that order and warm-up
do not bias the result; each round's pods are deleted before the next. Prints
pods bound per second per round, the medians and their ratio.

    python bench/scheduler.py [--nodes 1000] [--pods 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
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
    """Create pod_count pods at once; seconds until all are bound, and who scheduled them."""

    def create(i: int) -> None:
        body = simulate.pod_template([f"data-{i}"], annotations)
        body["metadata"]["name"] = f"{prefix}-{i}"
        body["metadata"]["labels"] = {"bench-round": prefix}
        kube.create(PODS, NAMESPACE, {"apiVersion": "v1", "kind": "Pod", **body})

    started = time.monotonic()
    in_parallel(create, range(pod_count))
    deadline = started + 600
    while time.monotonic() < deadline:
        pods = kube.request("GET", PODS.collection_path(), {"labelSelector": f"bench-round={prefix}"})["items"]
        if len(pods) == pod_count and all(p["spec"].get("nodeName") for p in pods):
            elapsed = time.monotonic() - started
            schedulers = {p["spec"]["schedulerName"] for p in pods}
            remove_round(kube, prefix)
            return elapsed, ",".join(sorted(schedulers))
        time.sleep(0.1)
    raise TimeoutError(f"{prefix}: pods not all bound in 10 minutes")


def remove_round(kube: Kube, prefix: str) -> None:
    """Delete a round's pods at once (no kubelet will ever confirm), so every round starts alike."""
    selector = {"labelSelector": f"bench-round={prefix}"}
    kube.request("DELETE", PODS.collection_path(), {**selector, "gracePeriodSeconds": "0"})
    deadline = time.monotonic() + 120
    while kube.request("GET", PODS.collection_path(), selector)["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{prefix}: pods not deleted")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scheduler, alternating (ABBA...)")
    args = parser.parse_args()
    cluster = LocalCluster.create()
    rates: dict[str, list[float]] = {"stork": [], "default": []}
    names: dict[str, str] = {}
    try:
        cluster.start()
        cluster.add_stork("longhorn")
        setup_started = time.monotonic()
        populate(cluster, args.nodes, args.pods)
        print(
            f"cluster: {args.nodes} nodes, {args.pods} bound Longhorn claims ({time.monotonic() - setup_started:.0f} s)"
        )
        kube = cluster.kube()
        run(kube, "warmup", min(50, args.pods), None)  # first requests pay for imports and cold caches
        order = [("stork", None), ("default", OPT_OUT)]
        for round_number in range(args.rounds):
            for kind, annotations in order if round_number % 2 == 0 else order[::-1]:
                seconds, names[kind] = run(kube, f"{kind}-{round_number}", args.pods, annotations)
                rates[kind].append(args.pods / seconds)
                print(f"round {round_number + 1}: {kind:8s} {args.pods / seconds:6.1f} pods/s", flush=True)
    finally:
        cluster.stop()
    stork, default = statistics.median(rates["stork"]), statistics.median(rates["default"])
    rows = [
        (
            names["stork"],
            "extender (filter + prioritize)",
            " ".join(f"{r:.1f}" for r in rates["stork"]),
            f"{stork:.1f}",
        ),
        (names["default"], "none", " ".join(f"{r:.1f}" for r in rates["default"]), f"{default:.1f}"),
    ]
    print_table(["scheduler", "calls", "pods/s per round", "median pods/s"], rows)
    print(f"ratio of medians (with extender / without): {stork / default:.2f}")


if __name__ == "__main__":
    main()
