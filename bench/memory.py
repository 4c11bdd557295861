"""Benchmark: resident memory of the extender, the webhook and the controller on a large cluster.

Fills the real local apiserver with 5,000 nodes (each with a Longhorn node),
20,000 Longhorn volumes with 2 replicas each (40,000 replicas) and 20,000 PVs
and claims bound to them (`--scale 0.25` for a quarter of that), then starts
stork-py for Longhorn (extender, webhook, controller) as the local cluster runs
them, waits until each is ready (caches synced) and prints the resident memory
(RSS) of each: the serving process and, for gunicorn, its master as well.

    python bench/memory.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from localcluster import simulate
from localcluster.cluster import LocalCluster

NAMESPACE = "bench"
GOAL_MB = 300


def in_parallel(work, items, threads: int = 24) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(work, items):
            pass


def populate(cluster: LocalCluster, nodes: int, volumes: int) -> None:
    kube = cluster.kube()
    names = [f"n{i:05d}" for i in range(nodes)]

    def add_node(indexed: tuple[int, str]) -> None:
        i, name = indexed
        zone = f"zone-{i % 3}"
        simulate.add_node(kube, name, {"topology.kubernetes.io/zone": zone}, internal_ip=f"10.{i // 250}.{i % 250}.1")
        simulate.add_longhorn_node(kube, name, zone=zone)

    started = time.monotonic()
    in_parallel(add_node, list(enumerate(names)))
    print(f"{nodes} nodes in {time.monotonic() - started:.0f} s", flush=True)
    simulate.longhorn_class(kube)
    cluster.ensure_namespace(NAMESPACE)
    rng = random.Random(11)
    placements = [rng.sample(names, 2) for _ in range(volumes)]

    def add_volume(i: int) -> None:
        simulate.add_longhorn_volume(kube, f"vol-{i:05d}", placements[i])
        simulate.longhorn_claim(kube, NAMESPACE, f"data-{i:05d}", f"vol-{i:05d}")

    started = time.monotonic()
    in_parallel(add_volume, range(volumes))
    print(f"{volumes} volumes, {2 * volumes} replicas, {volumes} PVs and claims in {time.monotonic() - started:.0f} s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def memory_of(cluster: LocalCluster, process: str) -> tuple[float, float]:
    """(the serving process, the whole process tree) in MB."""
    pid = cluster.control_plane.procs.running[process].pid
    pids = [pid, *children(pid)]
    sizes = {p: rss_mb(p) for p in pids}
    return max(sizes.values()), sum(sizes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to wait after ready before measuring")
    args = parser.parse_args()
    nodes, volumes = int(5000 * args.scale), int(20000 * args.scale)
    cluster = LocalCluster.create()
    try:
        cluster.start()
        populate(cluster, nodes, volumes)
        started = time.monotonic()
        cluster.add_stork("longhorn", ready_timeout=600)  # extender and webhook, ready once their caches synced
        cluster.start_controller("stork-controller", "longhorn", ["--lease-namespace", "stork"], ready_timeout=600)
        print(f"stork-py ready in {time.monotonic() - started:.0f} s; settling {args.settle:.0f} s", flush=True)
        time.sleep(args.settle)
        rows = []
        for label, process in (
            ("extender", "stork-extender"),
            ("webhook", "stork-webhook"),
            ("controller", "stork-controller"),
        ):
            serving, total = memory_of(cluster, process)
            rows.append((label, f"{serving:.0f}", f"{total:.0f}", "yes" if serving < GOAL_MB else "NO"))
    finally:
        cluster.stop()
    print(
        f"resident memory (MB) with {nodes} nodes, {volumes} Longhorn volumes, {2 * volumes} replicas, "
        f"{volumes} PVs and claims"
    )
    print_table(["component", "serving process", "process tree", f"< {GOAL_MB} MB"], rows)


if __name__ == "__main__":
    main()
