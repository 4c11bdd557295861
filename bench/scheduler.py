"""Benchmark: scheduling throughput with and without the extender, on the real control plane.

With N simulated nodes (default 1,000, each with a Longhorn node) and one
Longhorn volume per pod (2 replicas on random nodes), 300 pods go through the
`stork` scheduler, which calls the extender (filter + prioritize, NodeNames
mode, TLS), and 300 pods using the same volumes opt out of stork and go
through `default-scheduler`, which calls nothing. Both are kube-scheduler 1.20
processes with the same settings. Runs the two in alternating rounds (stork, default, default,
stork, ...; 5 each by default, after a warm-up round) so that order and warm-up
do not bias the result; each round's pods are deleted before the next. Prints
pods bound per second per round, the medians and their ratio.

    python bench/scheduler.py [--nodes 1000] [--pods 300] [--rounds 5]
                              [--extender-server granian|gunicorn] [--extender-app stork|floor]

`--extender-server gunicorn` serves the same extender app under gunicorn instead
of granian (stork-extender's default); `--extender-app floor` replaces it by bench/servers.py's empty
handler (parses the request, answers every node with no opinion): what the
round trips alone cost the scheduler.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import ssl
import statistics
import sys
import time
import urllib.request
from collections import Counter as Tally
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


def populate(cluster: LocalCluster, node_count: int, pod_count: int) -> list[list[str]]:
    """The nodes, and one bound claim per pod; returns each claim's replica nodes."""
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
    replicas = [rng.sample([n.name for n in nodes], 2) for _ in range(pod_count)]

    def volume(i: int) -> None:
        simulate.add_longhorn_volume(kube, f"vol-{i}", replicas[i])
        simulate.longhorn_claim(kube, NAMESPACE, f"data-{i}", f"vol-{i}")

    in_parallel(volume, range(pod_count))
    for i in range(pod_count):
        simulate.wait_bound_claim(kube, NAMESPACE, f"data-{i}", timeout=300)
    return replicas


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU of a process and its children still running (gunicorn workers)."""
    total = 0.0
    for p in (pid, *(_children(pid) if children else ())):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_by_process(cluster: LocalCluster) -> dict[str, float]:
    found = {name: cpu_seconds(proc.pid) for name, proc in cluster.control_plane.procs.running.items()}
    found["this benchmark"] = cpu_seconds(os.getpid(), children=False)  # its children are the cluster
    return found


def apiserver_requests(kube: Kube) -> Tally[str]:
    """The apiserver's own request counters (apiserver_request_total), as "VERB resource[/sub]"."""
    text = kube.request("GET", "/metrics", stream=True).data.decode()
    found: Tally[str] = Tally()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        found[f"{labels.get('verb', '')} {resource or '(non-resource)'}"] += int(float(line.rsplit(" ", 1)[1]))
    return found


@dataclass
class Round:
    seconds: float
    schedulers: str  # who bound the pods
    local: int  # pods bound to a node that holds a replica of their volume


def run(kube: Kube, prefix: str, replicas: list[list[str]], annotations: dict[str, str] | None) -> Round:
    """Create one pod per claim at once; seconds until all are bound, who bound them, and where."""
    pod_count = len(replicas)

    def create(i: int) -> None:
        body = simulate.pod_template([f"data-{i}"], annotations)
        body["metadata"]["name"] = f"{prefix}-{i}"
        body["metadata"]["labels"] = {"bench-round": prefix}
        kube.create(PODS, NAMESPACE, {"apiVersion": "v1", "kind": "Pod", **body})

    round_pods = {"labelSelector": f"bench-round={prefix}"}
    started = time.monotonic()
    in_parallel(create, range(pod_count))
    deadline = started + 600
    while time.monotonic() < deadline:
        # One unbound pod at most: a cheap question, so that polling takes little of the CPU
        # the schedulers compete for (listing every pod of the round 10 times a second did).
        query = {**round_pods, "fieldSelector": "spec.nodeName=", "limit": 1}
        unbound = kube.request("GET", PODS.collection_path(), query)
        if not unbound["items"]:
            elapsed = time.monotonic() - started
            pods = kube.request("GET", PODS.collection_path(), round_pods)["items"]
            assert len(pods) == pod_count and all(p["spec"].get("nodeName") for p in pods)
            schedulers = {p["spec"]["schedulerName"] for p in pods}
            local = sum(p["spec"]["nodeName"] in replicas[int(p["metadata"]["name"].rsplit("-", 1)[1])] for p in pods)
            remove_round(kube, prefix)
            return Round(elapsed, ",".join(sorted(schedulers)), local)
        time.sleep(0.1)
    raise TimeoutError(f"{prefix}: pods not all bound in 10 minutes")


def replace_extender(cluster: LocalCluster, stork, server: str, app: str) -> None:
    """Serve the `stork` scheduler's extender another way, on the same port with the same certificate."""
    name = f"{stork.name}-extender"
    procs = cluster.control_plane.procs
    procs.stop(name)
    if app == "stork":
        stork.start_extender(["--server", server])
        return
    certfile, keyfile = str(stork.tls / "tls.crt"), str(stork.tls / "tls.key")
    if server == "gunicorn":
        argv = [str(Path(__file__).resolve().parent / "servers.py"), "--serve", "gunicorn-gthread", "--app", "floor"]
        argv = [sys.executable, *argv, "--port", str(stork.extender_port), "--certfile", certfile, "--keyfile", keyfile]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-floor-granian"]
        argv += ["--port", str(stork.extender_port), "--certfile", certfile, "--keyfile", keyfile]
    procs.start(name, argv, env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    health = "/livez"
    context = ssl.create_default_context(cafile=str(stork.tls / "ca.crt"))

    def answers() -> bool:
        procs.check_alive(name)
        try:
            with urllib.request.urlopen(stork.extender_url + health, timeout=2, context=context) as resp:
                return resp.status == 200
        except OSError:
            return False

    deadline = time.monotonic() + 120
    while not answers():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} ({server}, floor) did not answer")
        time.sleep(0.3)


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
    parser.add_argument("--rounds", type=int, default=5, help="rounds per scheduler, alternating (ABBA...)")
    parser.add_argument("--extender-server", choices=["gunicorn", "granian"], default="granian")
    parser.add_argument("--extender-app", choices=["stork", "floor"], default="stork")
    parser.add_argument(
        "--stork-percentage",
        type=int,
        default=0,
        help="the stork scheduler's percentageOfNodesToScore (0: kube-scheduler's default; default-scheduler keeps it)",
    )
    parser.add_argument("--serve-floor-granian", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certfile", help=argparse.SUPPRESS)
    parser.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor_granian:  # the empty handler, served exactly as stork-extender serves (storkcore.serving)
        from bench.servers import floor_app
        from storkcore.serving import serve_granian

        return serve_granian(floor_app, f"127.0.0.1:{args.port}", args.certfile, args.keyfile)
    cluster = LocalCluster.create()
    rates: dict[str, list[float]] = {"stork": [], "default": []}
    names: dict[str, str] = {}
    local: dict[str, int] = {"stork": 0, "default": 0}  # pods bound next to a replica, all rounds
    try:
        cluster.start()
        stork = cluster.add_stork("longhorn", percentage_of_nodes_to_score=args.stork_percentage)
        if (args.extender_server, args.extender_app) != ("granian", "stork"):  # stork-extender's default
            replace_extender(cluster, stork, args.extender_server, args.extender_app)
        setup_started = time.monotonic()
        replicas = populate(cluster, args.nodes, args.pods)
        print(
            f"cluster: {args.nodes} nodes, {args.pods} bound Longhorn claims ({time.monotonic() - setup_started:.0f} s)"
        )
        kube = cluster.kube()
        run(kube, "warmup", replicas[: min(50, args.pods)], None)  # first requests pay for imports and cold caches
        order = [("stork", None), ("default", OPT_OUT)]
        cpu: dict[str, dict[str, float]] = {"stork": {}, "default": {}}  # process -> CPU seconds, all rounds
        requests: dict[str, Tally[str]] = {"stork": Tally(), "default": Tally()}  # apiserver requests, all rounds
        for round_number in range(args.rounds):
            for kind, annotations in order if round_number % 2 == 0 else order[::-1]:
                before, requests_before = cpu_by_process(cluster), apiserver_requests(kube)
                result = run(kube, f"{kind}-{round_number}", replicas, annotations)
                seconds, names[kind] = result.seconds, result.schedulers
                local[kind] += result.local
                after = cpu_by_process(cluster)
                requests[kind].update(apiserver_requests(kube) - requests_before)
                for process, used in after.items():
                    cpu[kind][process] = cpu[kind].get(process, 0.0) + used - before.get(process, used)
                rates[kind].append(args.pods / seconds)
                local_share = f"{result.local / args.pods:4.0%} on a replica node"
                print(f"round {round_number + 1}: {kind:8s} {rates[kind][-1]:6.1f} pods/s, {local_share}", flush=True)
    finally:
        cluster.stop()
    stork, default = statistics.median(rates["stork"]), statistics.median(rates["default"])
    rows = [
        (
            names["stork"],
            f"extender (filter + prioritize): {args.extender_app} app under {args.extender_server}",
            " ".join(f"{r:.1f}" for r in rates["stork"]),
            f"{stork:.1f}",
        ),
        (names["default"], "none", " ".join(f"{r:.1f}" for r in rates["default"]), f"{default:.1f}"),
    ]
    pods = args.pods * args.rounds
    rows[0] += (f"{local['stork'] / pods:.0%}",)
    rows[1] += (f"{local['default'] / pods:.0%}",)
    print_table(["scheduler", "calls", "pods/s per round", "median pods/s", "on a replica node"], rows)
    print(f"ratio of medians (with extender / without): {stork / default:.2f}")
    if args.stork_percentage:
        print(f"the stork scheduler's percentageOfNodesToScore: {args.stork_percentage}")
    processes = sorted(set(cpu["stork"]) | set(cpu["default"]), key=lambda p: -cpu["stork"].get(p, 0.0))
    print("CPU per pod bound (ms), by process, summed over each scheduler's rounds (2 cores here):")
    print_table(
        ["process", "stork rounds", "default rounds"],
        [
            (p, f"{cpu['stork'].get(p, 0.0) * 1000 / pods:.1f}", f"{cpu['default'].get(p, 0.0) * 1000 / pods:.1f}")
            for p in processes
            if cpu["stork"].get(p, 0.0) + cpu["default"].get(p, 0.0) > 0.05
        ],
    )
    print("apiserver requests per pod bound, by verb and resource (includes deleting the rounds' pods):")
    kinds = sorted(set(requests["stork"]) | set(requests["default"]), key=lambda k: -requests["stork"][k])
    print_table(
        ["request", "stork rounds", "default rounds"],
        [
            (k, f"{requests['stork'][k] / pods:.2f}", f"{requests['default'][k] / pods:.2f}")
            for k in kinds
            if requests["stork"][k] + requests["default"][k] >= pods * 0.05
        ],
    )


if __name__ == "__main__":
    main()
