"""Benchmark: resident memory of the extender, the webhook and the controller on a large cluster.

Fills the real local apiserver with 5,000 nodes (each with a Longhorn node),
20,000 Longhorn volumes with 2 replicas each (40,000 replicas) and 20,000 PVs
and claims bound to them (`--scale 0.25` for a quarter of that), then starts
stork-py for Longhorn (extender, webhook, controller) with the options the local
cluster runs them with, waits until each is ready (caches synced) and prints the
resident memory of each: the serving process's RSS, and its process tree's
(with the server's main process: gunicorn's master, granian's main) as RSS and
PSS summed. With `--sources A B`, the servers of each source tree are
started and measured in turn against the same cluster (a before/after in one
run: make A a worktree of the older commit).

    python bench/memory.py [--scale 1.0] [--sources DIR ...]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, print_table, start_server, stop_server
from certs import authority
from localcluster import simulate
from localcluster.cluster import LocalCluster
from tests.processes import free_port

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # our own test certificate

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
    return _kib_field(f"/proc/{pid}/status", "VmRSS:") / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size: pages shared with another process count for a share each."""
    return _kib_field(f"/proc/{pid}/smaps_rollup", "Pss:") / 1024


def _kib_field(path: str, name: str) -> float:
    for line in Path(path).read_text().splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return 0.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


Memory = tuple[float, float, float]


def memory_of(pid: int) -> Memory:
    """MB: the serving process's RSS, the process tree's RSS summed, and the tree's PSS summed.

    A forked worker shares its parent's pages until either writes them: the RSS sum counts
    those twice, the PSS sum once (what the tree takes from the machine or a container limit).
    """
    tree = (pid, *children(pid))
    sizes = [rss_mb(p) for p in tree]
    return max(sizes), sum(sizes), sum(map(pss_mb, tree))


def components(kubeconfig: Path, tls: Path) -> dict[str, tuple[list[str], str]]:
    """Module command lines and readiness URLs of the three servers, as the local cluster runs them."""
    common = ["--driver", "longhorn", "--kubeconfig", str(kubeconfig)]
    serving = ["--certfile", str(tls / "tls.crt"), "--keyfile", str(tls / "tls.key")]
    ports = [free_port() for _ in range(3)]
    return {
        "extender": (
            ["-m", "extender.cli", *common, *serving, "--bind", f"127.0.0.1:{ports[0]}"],
            f"https://127.0.0.1:{ports[0]}/readyz",
        ),
        "webhook": (
            ["-m", "webhook.cli", *common, *serving, "--bind", f"127.0.0.1:{ports[1]}", "--workers", "1"],
            f"https://127.0.0.1:{ports[1]}/readyz",
        ),
        "controller": (
            ["-m", "controller.cli", *common, "--bind", f"127.0.0.1:{ports[2]}", "--lease-namespace", "default"],
            f"http://127.0.0.1:{ports[2]}/readyz",
        ),
    }


def measure(source: Path, kubeconfig: Path, tls: Path, settle: float) -> dict[str, Memory]:
    """Start the three servers from one source tree, wait until all are ready (caches synced),
    settle, and read their memory; then stop them."""
    started = time.monotonic()
    procs = {}
    try:
        for name, (args, url) in components(kubeconfig, tls).items():
            procs[name] = start_server(args, url, verify=False, source=source, timeout=900)
        print(f"{source}: ready in {time.monotonic() - started:.0f} s; settling {settle:.0f} s", flush=True)
        time.sleep(settle)
        return {name: memory_of(proc.pid) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            stop_server(proc)


def measure_all(sources: list[Path], kubeconfig: Path, settle: float) -> dict[Path, dict[str, Memory]]:
    with tempfile.TemporaryDirectory() as folder:
        tls = Path(folder)
        ca = authority.create_ca()
        authority.save(tls, ca, authority.create_serving(ca, ["localhost"], ["127.0.0.1"]))
        return {source: measure(source, kubeconfig, tls, settle) for source in sources}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to wait after ready before measuring")
    parser.add_argument(
        "--sources",
        type=Path,
        nargs="+",
        default=[ROOT],
        help="source trees to measure one after another on the same cluster (e.g. a worktree of an older commit)",
    )
    parser.add_argument("--kubeconfig", type=Path, help="measure on this already-filled cluster instead of a new one")
    args = parser.parse_args()
    nodes, volumes = int(5000 * args.scale), int(20000 * args.scale)
    sources = [s.resolve() for s in args.sources]
    if args.kubeconfig:
        results = measure_all(sources, args.kubeconfig, args.settle)
    else:
        cluster = LocalCluster.create()
        try:
            cluster.start()
            populate(cluster, nodes, volumes)
            results = measure_all(sources, cluster.kubeconfig, args.settle)
        finally:
            cluster.stop()
    filled = f"{nodes} nodes, {volumes} Longhorn volumes, {2 * volumes} replicas, {volumes} PVs and claims"
    on = f"the cluster of {args.kubeconfig}" if args.kubeconfig else filled
    print(f"resident memory (MB) on {on}: serving process RSS / process tree RSS / process tree PSS")
    print("(tree: the server's main process and its worker; PSS counts pages they share once)")
    rows = []
    for label in ("extender", "webhook", "controller"):
        cells = [" / ".join(f"{mb:.0f}" for mb in results[s][label]) for s in sources]
        last = results[sources[-1]][label][0]
        rows.append((label, *cells, "yes" if last < GOAL_MB else "NO"))
    print_table(["component", *map(str, sources), f"< {GOAL_MB} MB (last)"], rows)


if __name__ == "__main__":
    main()
