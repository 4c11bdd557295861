"""Soak: stork-py on the local cluster under continuous churn, for a set time.

Runs the real control plane with 20 simulated nodes (each with a Longhorn node), stork-py for
Longhorn (extender and webhook as the local cluster runs them, and the controller), and for
`--minutes` (default 30) keeps changing the cluster:

- pods with Longhorn claims created and deleted (the real scheduler places each through the
  extender, the webhook admits each);
- Longhorn nodes flapping (not ready for a while, then ready again);
- replicas moving between nodes;
- once, at 40 % of the run: etcd compacted to its current revision and the apiserver
  restarted, so every watch breaks and resumes from a compacted revision (410 Gone, relist).

Meanwhile it measures the cache lag of the extender (a replica moves; how long until
/prioritize scores its new node highest) and of the webhook (a new Longhorn claim appears;
how long until a pod using it is sent to stork). At the end it prints, per component: resident
memory after warm-up and at the end (MB, process tree), requests served and 5xx answers
(`stork_http_responses_total`), and the cache lag.

Goals: memory growth after warm-up <= 10 %, no 5xx, cache lag p99 < 2 s.

    python bench/soak.py [--minutes 30]
"""

from __future__ import annotations

import argparse
import random
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, print_table
from bench.memory import memory_of
from localcluster import simulate
from localcluster.cluster import LocalCluster
from localcluster.stork import Stork
from storkcore.kube import PODS, ApiError, Kube

NAMESPACE = "soak"
NODES = [f"soak-{i:02d}" for i in range(20)]
VOLUMES = 30
GROWTH_GOAL, LAG_GOAL = 0.10, 2.0


class Churn:
    """Background threads that change the cluster, each counting what it did."""

    def __init__(self, kube: Kube, rng: random.Random) -> None:
        self.kube = kube
        self.rng = rng
        self.done = threading.Event()
        self.counts = {"pods created": 0, "pods deleted": 0, "node flaps": 0, "replicas moved": 0, "errors": 0}
        self.down: set[str] = set()  # Longhorn nodes flapped down right now
        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def run(self, name: str, step: Callable[[], None], every: float) -> threading.Thread:
        def loop() -> None:
            while not self.done.wait(every):
                try:
                    step()
                except Exception:  # the apiserver restarting (refused, reset, 5xx): carry on
                    self.count("errors")

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        return thread

    def pods(self) -> None:
        """Keep about ten pods: create one, delete the oldest beyond ten."""
        body = {"apiVersion": "v1", "kind": "Pod", **simulate.pod_template([f"data-{self.rng.randrange(VOLUMES)}"])}
        body["metadata"]["generateName"] = "churn-"
        self.kube.create(PODS, NAMESPACE, body)
        self.count("pods created")
        pods = sorted(
            self.kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", {"labelSelector": ""})["items"],
            key=lambda p: p["metadata"]["creationTimestamp"],
        )
        for pod in pods[:-10]:
            self.kube.delete(PODS, NAMESPACE, pod["metadata"]["name"], {"gracePeriodSeconds": 0})
            self.count("pods deleted")

    def flap(self) -> None:
        node = self.rng.choice(NODES)
        self.down.add(node)
        try:
            simulate.set_longhorn_node(self.kube, node, ready=False)
            self.done.wait(8)
            simulate.set_longhorn_node(self.kube, node, ready=True)
            self.count("node flaps")
        finally:
            self.down.discard(node)

    def move(self) -> None:
        move_replica(self.kube, f"vol-{self.rng.randrange(VOLUMES)}", self.rng.choice(NODES))
        self.count("replicas moved")


def move_replica(kube: Kube, volume: str, node: str) -> None:
    replica = f"{volume}-r-00"
    patch = {"metadata": {"labels": {"longhornnode": node}}, "spec": {"nodeID": node}}
    kube.patch(simulate.LH["replicas"], simulate.LONGHORN_NAMESPACE, replica, patch)


class LagProbe:
    """Cache lag: from a change in the API to the component's answer reflecting it."""

    def __init__(self, kube: Kube, stork: Stork, rng: random.Random, churn: Churn, probe_node: str) -> None:
        self.kube, self.stork, self.rng, self.churn = kube, stork, rng, churn
        self.probe_node = probe_node  # where the probe volume's single replica is
        self.context = ssl.create_default_context(cafile=str(stork.tls / "ca.crt"))
        self.extender: list[float] = []
        self.webhook: list[float] = []
        self.timeouts = {"extender": 0, "webhook": 0}
        self.last_error: dict[str, str] = {}  # why the last timed-out probe's answers did not count
        self._claims = 0

    def _post(self, url: str, body: dict) -> dict:
        request = urllib.request.Request(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5, context=self.context) as resp:
            return orjson.loads(resp.read())

    def _until(self, check: Callable[[], bool], samples: list[float], which: str, started: float) -> None:
        deadline = started + 30
        error = "the answer never reflected the change"
        while time.monotonic() < deadline:
            try:
                if check():
                    samples.append(time.monotonic() - started)
                    return
            except (OSError, ApiError) as err:
                body = err.read().decode(errors="replace")[:200] if hasattr(err, "read") else ""
                error = f"{err!r} {body}"
            time.sleep(0.02)
        self.timeouts[which] += 1
        self.last_error[which] = error

    def extender_lag(self) -> None:
        """A replica of the probe volume moves; its new node must score highest."""
        pod = simulate.pod_template(["probe"])
        # A new uid each time: never the assessment the extender shares for an older pod.
        pod["metadata"].update(name="probe", namespace=NAMESPACE, uid=f"probe-{time.monotonic()}")
        # Another node, and not one flapping (a down node scores low on purpose).
        target = self.rng.choice([n for n in NODES if n != self.probe_node and n not in self.churn.down])
        started = time.monotonic()
        move_replica(self.kube, "vol-probe", target)
        self.probe_node = target

        def reflected() -> bool:
            pod["metadata"]["resourceVersion"] = str(time.monotonic())
            scores = self._post(self.stork.extender_url + "/prioritize", {"Pod": pod, "NodeNames": NODES})
            best = max(s["Score"] for s in scores)
            return (
                any(s["Host"] == target and s["Score"] == best and best > 0 for s in scores)
                and sum(1 for s in scores if s["Score"] == best) == 1
            )

        self._until(reflected, self.extender, "extender", started)

    def webhook_lag(self) -> None:
        """A new Longhorn claim appears; a pod using it must be sent to stork."""
        self._claims += 1
        claim = f"lag-{self._claims}"
        started = time.monotonic()
        simulate.longhorn_claim(self.kube, NAMESPACE, claim, f"vol-{self._claims % VOLUMES}")
        body = {"apiVersion": "v1", "kind": "Pod", **simulate.pod_template([claim])}
        body["metadata"]["name"] = f"lag-{self._claims}"

        def reflected() -> bool:
            pod = self.kube.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", {"dryRun": "All"}, body)
            return pod["spec"].get("schedulerName") == "stork"

        self._until(reflected, self.webhook, "webhook", started)
        # Leave the cluster as it was: the soak measures growth, not more data.
        self.kube.delete(simulate.PVCS, NAMESPACE, claim)
        self.kube.delete(simulate.PVS, "", f"pv-{NAMESPACE}-{claim}")


def served(text: str) -> tuple[int, int]:
    """(responses, 5xx responses) from `stork_http_responses_total`, but for /readyz's 503
    (not ready while caches relist, by design: the probe takes the pod out of the Service)."""
    total = errors = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != "stork_http_responses_total":
                continue
            code, route, count = sample.labels["code"], sample.labels["route"], int(sample.value)
            total += count
            if code.startswith("5") and (route, code) != ("/readyz", "503"):
                errors += count
    return total, errors


def read_url(url: str, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return resp.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=0.15, help="fraction of the run before the first memory sample")
    args = parser.parse_args()
    rng = random.Random(7)
    cluster = LocalCluster.create()
    try:
        cluster.start()
        kube = cluster.kube()
        for i, node in enumerate(NODES):
            zone = f"zone-{i % 3}"
            simulate.add_node(kube, node, {"topology.kubernetes.io/zone": zone}, internal_ip=f"10.9.0.{i + 1}")
            simulate.add_longhorn_node(kube, node, zone=zone)
        simulate.longhorn_class(kube)
        cluster.ensure_namespace(NAMESPACE)
        for i in range(VOLUMES):
            simulate.add_longhorn_volume(kube, f"vol-{i}", rng.sample(NODES, 2))
            simulate.longhorn_claim(kube, NAMESPACE, f"data-{i}", f"vol-{i}")
        simulate.add_longhorn_volume(kube, "vol-probe", [NODES[0]])  # one replica: its node alone scores 100
        simulate.longhorn_claim(kube, NAMESPACE, "probe", "vol-probe")
        stork = cluster.add_stork("longhorn")
        controller = cluster.start_controller(
            "stork-controller",
            "longhorn",
            ["--lease-namespace", "stork", "--health-monitor-interval", "30", "--offline-backoff", "10"],
        )
        run(cluster, stork, controller, rng, args.minutes * 60, args.warmup)
    finally:
        cluster.stop()


def run(
    cluster: LocalCluster, stork: Stork, controller: str, rng: random.Random, seconds: float, warmup: float
) -> None:
    kube = cluster.kube()
    churn = Churn(kube, rng)
    probe = LagProbe(kube, stork, rng, churn, NODES[0])
    threads = [
        churn.run("pods", churn.pods, 1.0),
        churn.run("flap", churn.flap, 15.0),
        churn.run("move", churn.move, 3.0),
        churn.run("extender-lag", probe.extender_lag, 5.0),
        churn.run("webhook-lag", probe.webhook_lag, 5.0),
    ]
    processes = {"extender": "stork-extender", "webhook": "stork-webhook", "controller": "stork-controller"}
    started = time.monotonic()
    print(f"soaking for {seconds / 60:.0f} min", flush=True)
    time.sleep(seconds * warmup)

    def tree_rss() -> dict[str, float]:
        running = cluster.control_plane.procs.running
        return {label: memory_of(running[process].pid)[1] for label, process in processes.items()}

    memory_start = tree_rss()
    print(f"warm-up over at {time.monotonic() - started:.0f} s: {memory_start}", flush=True)
    time.sleep(max(0.0, started + seconds * 0.4 - time.monotonic()))
    revision = cluster.control_plane.compact_etcd()
    cluster.control_plane.restart_apiserver()
    print(
        f"etcd compacted to revision {revision}, apiserver restarted at {time.monotonic() - started:.0f} s", flush=True
    )
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    memory_end = tree_rss()
    churn.done.set()
    for thread in threads:
        thread.join(40)
    context = ssl.create_default_context(cafile=str(stork.tls / "ca.crt"))
    metrics = {
        "extender": read_url(stork.extender_url + "/metrics", context),
        "webhook": read_url(stork.webhook_url + "/metrics", context),
        "controller": read_url(controller + "/metrics"),
    }
    lags = {"extender": probe.extender, "webhook": probe.webhook}
    rows = []
    for label in processes:
        total, errors = served(metrics[label])
        growth = memory_end[label] / memory_start[label] - 1
        lag = lags.get(label)
        rows.append(
            (
                label,
                f"{memory_start[label]:.0f}",
                f"{memory_end[label]:.0f}",
                f"{growth * 100:+.1f}%",
                total,
                errors,
                f"{percentile(lag, 50):.3f} / {percentile(lag, 99):.3f} ({len(lag)})" if lag else "-",
                probe.timeouts.get(label, "-"),
            )
        )
    print(f"\nsoak of {seconds / 60:.0f} min; churn: {churn.counts}")
    print_table(
        [
            "component",
            "MB after warm-up",
            "MB end",
            "growth",
            "responses",
            "5xx",
            "cache lag p50 / p99 s (n)",
            "lag > 30 s",
        ],
        rows,
    )
    ok_memory = all(memory_end[c] <= memory_start[c] * (1 + GROWTH_GOAL) for c in processes)
    ok_errors = all(row[5] == 0 for row in rows)
    ok_lag = all(percentile(lag, 99) < LAG_GOAL for lag in lags.values() if lag) and not any(probe.timeouts.values())
    for which, error in probe.last_error.items():
        print(f"{which} lag probe timed out {probe.timeouts[which]} times; last: {error}")
    print(
        f"goals: growth <= {GROWTH_GOAL:.0%}: {'yes' if ok_memory else 'NO'}; no 5xx: {'yes' if ok_errors else 'NO'}; "
        f"cache lag p99 < {LAG_GOAL:.0f} s: {'yes' if ok_lag else 'NO'}"
    )


if __name__ == "__main__":
    main()
