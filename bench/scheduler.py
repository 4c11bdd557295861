"""Benchmark: scheduling throughput with and without the extender, on the real control plane.

With N simulated nodes (default 1,000, each with a Longhorn node) and one
Longhorn volume per pod (2 replicas on random nodes; `--volumes 2` gives each
pod two), three kinds of rounds of 300 pods each, on one cluster. A round's
pods are a StatefulSet's (Parallel pod management, claims made beforehand and
bound), created through the webhook as the shipped install does, while every
kube-scheduler is paused (SIGSTOP); the round is timed from their release to
the last binding, so it measures scheduling, not pod creation. Kinds:
- stork: the pods go through the `stork` scheduler, which calls the extender
  (filter + prioritize, NodeNames mode, TLS);
- default: the same pods opt out of stork and go through `default-scheduler`,
  which calls nothing;
- floor: they go through a second kube-scheduler configured like stork's,
  calling bench/servers.py's empty handler (parses the request, answers every
  node with no opinion), served the same way: what the round trips alone cost.
All are kube-scheduler 1.20 processes with the same settings. The kinds run in
rotating order (stork, default, floor, then floor, default, stork, ...; 5 rounds
each by default, after a warm-up round each) so that order and warm-up do not
bias the result; each round's pods are deleted before the next. Prints pods
bound per second per round, the share of pods bound to a node holding a replica
of their volume, the medians and their ratios, and CPU and apiserver requests
per pod by process.

    python bench/scheduler.py [--nodes 1000] [--pods 300] [--volumes 1|2] [--rounds 5] [--no-floor]
                              [--stork-percentage N] [--no-locality-constraint]
                              [--extender-server granian|gunicorn] [--extender-app stork|floor]

`--extender-server gunicorn` serves the extenders under gunicorn instead of
granian (stork-extender's default); `--extender-app floor` replaces stork's
extender itself by the empty handler (no separate floor rounds then).
`--stork-percentage` sets percentageOfNodesToScore on the schedulers that call
an extender: kube-scheduler stops looking for feasible nodes once it has that
share of the cluster, so the extender only sees (and can only prefer) those.
`--no-locality-constraint` runs the webhook without the replica-node constraint
(storkcore/locality.py), as stork-py was before it: the sampling then decides.
Every kube-scheduler gets the same client budget (qps 1000, burst 2000), so
that no scheduler is capped at the same binding rate by its API client.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import ssl
import statistics
import sys
import time
import urllib.request
from collections import Counter as Tally
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from localcluster import simulate
from localcluster.cluster import LocalCluster, NodeSpec
from localcluster.controlplane import SchedulerSpec
from localcluster.processes import free_port
from localcluster.progress import step
from localcluster.stork import Stork
from storkcore.kube import Kube, Resource

NAMESPACE = "bench"
PODS = Resource("", "v1", "pods", NAMESPACE)
STATEFULSETS = Resource("apps", "v1", "statefulsets", NAMESPACE)
SET_NAME = "bench"
CLAIM_TEMPLATES = ("data", "logs")  # a pod's claims: <template>-bench-<ordinal>
OPT_OUT = {"stork.libopenstorage.org/disable-admission-controller": "true"}


def in_parallel(work, items, threads: int = 16, message: str = "") -> None:
    """`work` on every item, 16 at a time; with a message, a bar says how far (thousands of nodes take minutes)."""
    with step(message, out=sys.stderr) if message else nullcontext() as progress, ThreadPoolExecutor(threads) as pool:
        for done, _ in enumerate(pool.map(work, items), 1):
            if progress is not None:
                progress.count(done, len(items))


@dataclass
class Layout:
    """Where the data is: each pod's volumes' replica nodes, and each node's rack."""

    replicas: list[list[list[str]]]  # pod ordinal -> volume -> replica nodes
    racks: dict[str, str]  # node -> "zone/rack"

    def score(self, pod: int, node: str) -> int:
        """The locality score SPEC §5 gives the node (replica 100, same rack 50, same zone 25)."""
        total = 0
        for replica_nodes in self.replicas[pod]:
            if node in replica_nodes:
                total += 100
            elif self.racks[node] in {self.racks[r] for r in replica_nodes}:
                total += 50
            elif self.racks[node].split("/")[0] in {self.racks[r].split("/")[0] for r in replica_nodes}:
                total += 25
        return total

    def best(self, pod: int) -> int:
        return max(self.score(pod, node) for node in self.racks)


def populate(cluster: LocalCluster, node_count: int, pod_count: int, volumes: int) -> Layout:
    """The nodes, and bound claims for each pod's volumes."""
    nodes = [NodeSpec(f"n{i:04d}", zone=f"zone-{i % 3}", rack=f"rack-{i % 12}") for i in range(node_count)]
    kube = cluster.kube()

    def add(indexed: tuple[int, NodeSpec]) -> None:
        i, node = indexed
        simulate.add_node(kube, node.name, node.labels(), internal_ip=f"10.{i // 250}.{i % 250}.1")
        simulate.add_longhorn_node(kube, node.name, zone=node.zone)

    in_parallel(add, list(enumerate(nodes)), message=f"creating {node_count} nodes")
    simulate.longhorn_class(kube)
    cluster.ensure_namespace(NAMESPACE)
    rng = random.Random(7)
    replicas = [[rng.sample([n.name for n in nodes], 2) for _ in range(volumes)] for _ in range(pod_count)]
    claims = [(i, v, f"{CLAIM_TEMPLATES[v]}-{SET_NAME}-{i}") for i in range(pod_count) for v in range(volumes)]

    def volume(claim: tuple[int, int, str]) -> None:
        i, v, name = claim
        simulate.add_longhorn_volume(kube, f"vol-{i}-{v}", replicas[i][v])
        simulate.longhorn_claim(kube, NAMESPACE, name, f"vol-{i}-{v}")

    in_parallel(volume, claims, message=f"creating {len(claims)} volumes and their claims")
    for _, _, name in claims:
        simulate.wait_bound_claim(kube, NAMESPACE, name, timeout=300)
    return Layout(replicas, {n.name: f"{n.zone}/{n.rack}" for n in nodes})


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
    local: int  # pods bound to a node that holds a replica of one of their volumes
    best: int  # pods bound to a node with the best locality score in the cluster


@dataclass
class Kind:
    """One way of scheduling a round's pods."""

    name: str
    annotations: dict[str, str] | None = None
    scheduler_name: str | None = None  # None: the webhook decides


STORK, DEFAULT = Kind("stork"), Kind("default", OPT_OUT)
# The empty extender, called by its own kube-scheduler (same settings as stork's); the pods name
# that scheduler and opt out of the webhook's mutation, which then only answers "allowed".
FLOOR = Kind("floor", OPT_OUT, "stork-floor")


def round_orders(kinds: list[Kind]) -> list[list[Kind]]:
    """Round orders, cycled: ABBA for two kinds; for three, every kind first, middle and last
    equally often over six rounds."""
    if len(kinds) == 2:
        return [kinds, kinds[::-1]]
    a, b, c = kinds
    return [[a, b, c], [c, b, a], [b, c, a], [a, c, b], [c, a, b], [b, a, c]]


def schedulers(cluster: LocalCluster) -> list[int]:
    """The pids of every kube-scheduler of the cluster."""
    return [p.pid for name, p in cluster.control_plane.procs.running.items() if name.endswith("scheduler")]


def statefulset(prefix: str, kind: Kind, pod_count: int, volumes: int) -> dict:
    """The round's pods as a StatefulSet's, on the claims made beforehand (the templates only name them)."""
    template = simulate.pod_template([], kind.annotations)
    template["metadata"]["labels"] = {"bench-round": prefix}
    template["spec"]["volumes"] = []
    template["spec"]["containers"][0]["volumeMounts"] = [
        {"name": CLAIM_TEMPLATES[v], "mountPath": f"/{CLAIM_TEMPLATES[v]}"} for v in range(volumes)
    ]
    if kind.scheduler_name:
        template["spec"]["schedulerName"] = kind.scheduler_name
    claim_templates = [
        {
            "metadata": {"name": CLAIM_TEMPLATES[v]},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "longhorn",
                "resources": {"requests": {"storage": "2Gi"}},
            },
        }
        for v in range(volumes)
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": SET_NAME, "namespace": NAMESPACE},
        "spec": {
            "replicas": pod_count,
            "serviceName": SET_NAME,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"bench-round": prefix}},
            "template": template,
            "volumeClaimTemplates": claim_templates,
        },
    }


def run(cluster: LocalCluster, prefix: str, layout: Layout, kind: Kind, pod_count: int) -> Round:
    """Create the round's pods with every scheduler paused, release them; seconds until all are
    bound, who bound them, and where."""
    kube = cluster.kube()
    volumes = len(layout.replicas[0])
    round_pods = {"labelSelector": f"bench-round={prefix}"}
    paused = schedulers(cluster)
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    try:
        kube.create(STATEFULSETS, NAMESPACE, statefulset(prefix, kind, pod_count, volumes))
        deadline = time.monotonic() + 300
        while len(kube.request("GET", PODS.collection_path(), round_pods)["items"]) < pod_count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{prefix}: the StatefulSet did not create its pods in 5 minutes")
            time.sleep(0.5)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    started = time.monotonic()
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
            bound_by = {p["spec"]["schedulerName"] for p in pods}
            placed = [(int(p["metadata"]["name"].rsplit("-", 1)[1]), p["spec"]["nodeName"]) for p in pods]
            local = sum(any(node in r for r in layout.replicas[i]) for i, node in placed)
            best = sum(layout.score(i, node) == layout.best(i) for i, node in placed)
            remove_round(kube, prefix)
            return Round(elapsed, ",".join(sorted(bound_by)), local, best)
        time.sleep(0.1)
    raise TimeoutError(f"{prefix}: pods not all bound in 10 minutes")


def replace_extender(cluster: LocalCluster, stork: Stork, server: str, app: str) -> None:
    """Serve the `stork` scheduler's extender another way, on the same port with the same certificate."""
    cluster.control_plane.procs.stop(f"{stork.name}-extender")
    if app == "stork":
        stork.start_extender(["--server", server])
    else:
        serve_floor(cluster, stork, server, f"{stork.name}-extender", stork.extender_port)


def serve_floor(cluster: LocalCluster, stork: Stork, server: str, name: str, port: int) -> str:
    """Start the empty extender on a port, with stork's certificate; its URL once it answers."""
    procs = cluster.control_plane.procs
    certfile, keyfile = str(stork.tls / "tls.crt"), str(stork.tls / "tls.key")
    if server == "gunicorn":
        argv = [str(Path(__file__).resolve().parent / "servers.py"), "--serve", "gunicorn-gthread", "--app", "floor"]
        argv = [sys.executable, *argv, "--port", str(port), "--certfile", certfile, "--keyfile", keyfile]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-floor-granian"]
        argv += ["--port", str(port), "--certfile", certfile, "--keyfile", keyfile]
    procs.start(name, argv, env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(stork.tls / "ca.crt"))

    def answers() -> bool:
        procs.check_alive(name)
        try:
            with urllib.request.urlopen(url + "/livez", timeout=2, context=context) as resp:
                return resp.status == 200
        except OSError:
            return False

    deadline = time.monotonic() + 120
    while not answers():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} ({server}, floor) did not answer")
        time.sleep(0.3)
    return url


def add_floor_scheduler(cluster: LocalCluster, stork: Stork, server: str, percentage: int) -> None:
    """A second kube-scheduler like stork's (profile `stork-floor`) calling the empty extender."""
    url = serve_floor(cluster, stork, server, "floor-extender", free_port())
    spec = SchedulerSpec(
        name="floor-scheduler",
        profiles=[FLOOR.scheduler_name],
        extender_url=url,
        extender_ca=stork.tls / "ca.crt",
        extender_timeout=stork.extender_timeout,
        percentage_of_nodes_to_score=percentage,
    )
    cluster.control_plane.start_scheduler(spec)


def remove_round(kube: Kube, prefix: str) -> None:
    """Delete a round's StatefulSet, then its pods at once (no kubelet will ever confirm), so
    every round starts alike."""
    selector = {"labelSelector": f"bench-round={prefix}"}
    kube.request("DELETE", STATEFULSETS.object_path(NAMESPACE, SET_NAME), body={"propagationPolicy": "Orphan"})
    deadline = time.monotonic() + 60
    while kube.get(STATEFULSETS, NAMESPACE, SET_NAME) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{prefix}: StatefulSet not deleted")
        time.sleep(0.2)
    kube.request("DELETE", PODS.collection_path(), {**selector, "gracePeriodSeconds": "0"})
    deadline = time.monotonic() + 120
    while kube.request("GET", PODS.collection_path(), selector)["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{prefix}: pods not deleted")
        time.sleep(0.2)


@dataclass
class Totals:
    """What one kind of round added up to over all its rounds."""

    rates: list[float] = field(default_factory=list)  # pods/s, one per round
    schedulers: str = ""
    local: int = 0  # pods bound next to a replica of one of their volumes
    best: int = 0  # pods bound to a node with the best locality score
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds
    requests: Tally[str] = field(default_factory=Tally)  # apiserver requests


def settle(kube: Kube, quiet: float = 10.0, limit: float = 300.0) -> None:
    """Wait until nothing patches nodes for `quiet` seconds: kube-controller-manager's TTL
    controller annotates every node as the cluster grows, which would land on the first round."""
    deadline = time.monotonic() + limit
    last, since = apiserver_requests(kube)["PATCH nodes"], time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(1)
        now = apiserver_requests(kube)["PATCH nodes"]
        if now != last:
            last, since = now, time.monotonic()


def measure(cluster: LocalCluster, layout: Layout, kinds: list[Kind], rounds: int) -> dict[str, Totals]:
    kube = cluster.kube()
    settle(kube)
    pod_count = len(layout.replicas)
    for kind in kinds:  # first requests pay for imports and cold caches
        run(cluster, f"warmup-{kind.name}", layout, kind, min(50, pod_count))
    totals = {kind.name: Totals() for kind in kinds}
    orders = round_orders(kinds)
    for round_number in range(rounds):
        for kind in orders[round_number % len(orders)]:
            total = totals[kind.name]
            before, requests_before = cpu_by_process(cluster), apiserver_requests(kube)
            result = run(cluster, f"{kind.name}-{round_number}", layout, kind, pod_count)
            after = cpu_by_process(cluster)
            total.requests.update(apiserver_requests(kube) - requests_before)
            for process, used in after.items():
                total.cpu[process] = total.cpu.get(process, 0.0) + used - before.get(process, used)
            total.rates.append(pod_count / result.seconds)
            total.schedulers, total.local, total.best = (
                result.schedulers,
                total.local + result.local,
                total.best + result.best,
            )
            local_share = (
                f"{result.local / pod_count:4.0%} on a replica node, {result.best / pod_count:4.0%} best score"
            )
            print(f"round {round_number + 1}: {kind.name:8s} {total.rates[-1]:6.1f} pods/s, {local_share}", flush=True)
    return totals


def report(totals: dict[str, Totals], pods: int, extender: str) -> None:
    """The medians and their ratios, then CPU and apiserver requests per pod, by kind of round."""
    calls = {"stork": f"extender: {extender}", "default": "none", "floor": "extender: the empty handler"}
    medians = {name: statistics.median(total.rates) for name, total in totals.items()}
    rows = [
        (
            total.schedulers,
            calls[name],
            " ".join(f"{r:.1f}" for r in total.rates),
            f"{medians[name]:.1f}",
            f"{total.local / pods:.1%}",
            f"{total.best / pods:.1%}",
        )
        for name, total in totals.items()
    ]
    headers = ["scheduler", "calls", "pods/s per round", "median pods/s", "on a replica node", "at the best score"]
    print_table(headers, rows)
    print(f"ratio of medians (with extender / without): {medians['stork'] / medians['default']:.2f}")
    if "floor" in medians:
        print(f"ratio of medians (empty extender / without): {medians['floor'] / medians['default']:.2f}")
        print(f"ratio of medians (stork-py / empty extender): {medians['stork'] / medians['floor']:.2f}")
    names = list(totals)
    processes = sorted({p for t in totals.values() for p in t.cpu}, key=lambda p: -totals["stork"].cpu.get(p, 0.0))
    print("CPU per pod bound (ms), by process, summed over each kind's rounds (2 cores here):")
    print_table(
        ["process", *(f"{name} rounds" for name in names)],
        [
            (p, *(f"{totals[name].cpu.get(p, 0.0) * 1000 / pods:.1f}" for name in names))
            for p in processes
            if sum(t.cpu.get(p, 0.0) for t in totals.values()) > 0.05
        ],
    )
    print("apiserver requests per pod bound, by verb and resource (includes deleting the rounds' pods):")
    requests = sorted({k for t in totals.values() for k in t.requests}, key=lambda k: -totals["stork"].requests[k])
    print_table(
        ["request", *(f"{name} rounds" for name in names)],
        [
            (k, *(f"{totals[name].requests[k] / pods:.2f}" for name in names))
            for k in requests
            if sum(t.requests[k] for t in totals.values()) >= pods * 0.05
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--volumes", type=int, choices=[1, 2], default=1, help="volumes per pod (2 replicas each)")
    parser.add_argument(
        "--no-locality-constraint",
        action="store_true",
        help="run the webhook without the replica-node constraint (as before it existed)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per kind, alternating (ABBA..., ABC CBA ...)")
    parser.add_argument("--extender-server", choices=["gunicorn", "granian"], default="granian")
    parser.add_argument("--extender-app", choices=["stork", "floor"], default="stork")
    parser.add_argument("--no-floor", action="store_true", help="no rounds through the empty extender")
    parser.add_argument(
        "--stork-percentage",
        type=int,
        default=0,
        help="percentageOfNodesToScore of the schedulers that call an extender (0: kube-scheduler's default)",
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
    kinds = [STORK, DEFAULT] if args.no_floor or args.extender_app == "floor" else [STORK, DEFAULT, FLOOR]
    cluster = LocalCluster.create()
    try:
        cluster.start()
        stork = cluster.add_stork(
            "longhorn",
            percentage_of_nodes_to_score=args.stork_percentage,
            webhook_args=["--no-locality-constraint"] if args.no_locality_constraint else [],
            ready_timeout=600,
        )
        if (args.extender_server, args.extender_app) != ("granian", "stork"):  # stork-extender's default
            replace_extender(cluster, stork, args.extender_server, args.extender_app)
        if FLOOR in kinds:
            add_floor_scheduler(cluster, stork, args.extender_server, args.stork_percentage)
        setup_started = time.monotonic()
        layout = populate(cluster, args.nodes, args.pods, args.volumes)
        took = time.monotonic() - setup_started
        print(
            f"cluster: {args.nodes} nodes, {args.pods} pods with {args.volumes} bound Longhorn claim(s) ({took:.0f} s)"
        )
        locality = "off" if args.no_locality_constraint else "on"
        print(f"webhook's replica-node constraint: {locality}", flush=True)
        totals = measure(cluster, layout, kinds, args.rounds)
    finally:
        cluster.stop()
    report(totals, args.pods * args.rounds, f"{args.extender_app} app under {args.extender_server}")
    if args.stork_percentage:
        print(f"percentageOfNodesToScore of the schedulers calling an extender: {args.stork_percentage}")


if __name__ == "__main__":
    main()
