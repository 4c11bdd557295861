"""End to end: the health monitor moves a pod off a node whose Longhorn storage died,
does nothing when every node looks offline, and only the leader of two replicas acts."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from localcluster import simulate
from tests.e2e.helpers import PODS, bound_pod, longhorn_workload, pods_of, replacement_pod, unique, wait_for

pytestmark = pytest.mark.e2e

FAST = [
    "--no-group-snapshots",  # tests/e2e/test_group_snapshots.py runs its own
    "--health-monitor-interval",
    "1",
    "--unsafe-short-intervals",
    "--offline-backoff",
    "3",
    "--batch-interval",
    "1",
    "--lease-namespace",
    "stork",
]


@pytest.fixture(scope="module")
def controllers(cluster, longhorn):
    replicas = {name: cluster.start_controller(name, "longhorn", FAST) for name in ("controller-a", "controller-b")}
    try:
        yield replicas
    finally:
        for name in replicas:
            cluster.stop_process(name)


def metric(base: str, name: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def leader_of(controllers: dict[str, str]) -> str:
    return wait_for(
        lambda: next((n for n, base in controllers.items() if metric(base, "stork_controller_leader") == 1), None),
        30,
        "a leader",
    )


def test_pod_moves_off_a_node_whose_storage_died(kube, cluster, controllers):
    namespace = unique("health")
    cluster.ensure_namespace(namespace)
    longhorn_workload(kube, namespace, ["node-1", "node-3"], app="db")
    first = bound_pod(kube, namespace, "db")
    dead, other = first["spec"]["nodeName"], {"node-1": "node-3", "node-3": "node-1"}[first["spec"]["nodeName"]]
    leader = leader_of(controllers)
    simulate.set_longhorn_node(kube, dead, ready=False)
    try:
        replacement = replacement_pod(kube, namespace, "db", first)
    finally:
        simulate.set_longhorn_node(kube, dead, ready=True)
    assert replacement["spec"]["schedulerName"] == "stork"  # admitted by our webhook
    assert replacement["spec"]["nodeName"] == other  # placed by the real scheduler through our extender
    old = kube.get(PODS, namespace, first["metadata"]["name"])
    assert old is None or old["metadata"].get("deletionTimestamp")  # graceful: the node itself is Ready
    events = kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        {"fieldSelector": f"involvedObject.name={first['metadata']['name']}"},
    )["items"]
    assert any(e["reason"] == "StorageDriverOffline" for e in events)
    # Only the leader acted.
    assert metric(controllers[leader], "stork_pods_rescheduled_total") >= 1
    follower = next(n for n in controllers if n != leader)
    assert metric(controllers[follower], "stork_pods_rescheduled_total") == 0
    assert "pod deleted" not in cluster.log(follower)


def test_no_pod_is_deleted_when_every_longhorn_node_is_offline(kube, cluster, controllers):
    namespace = unique("health")
    cluster.ensure_namespace(namespace)
    longhorn_workload(kube, namespace, ["node-2", "node-4"], app="db")
    pod = bound_pod(kube, namespace, "db")
    leader = leader_of(controllers)
    held_back = metric(controllers[leader], 'stork_health_monitor_skipped_total{reason="too-many-offline"}')
    nodes = [f"node-{i}" for i in range(6)]
    for node in nodes:
        simulate.set_longhorn_node(kube, node, ready=False)
    try:
        wait_for(
            lambda: (
                metric(controllers[leader], 'stork_health_monitor_skipped_total{reason="too-many-offline"}')
                > held_back + 3
            ),
            30,
            "the monitor to hold back a few times",
        )
        time.sleep(5)  # longer than the whole back-off and a batch
    finally:
        for node in nodes:
            simulate.set_longhorn_node(kube, node, ready=True)
    (still,) = pods_of(kube, namespace, "db")
    assert still["metadata"]["uid"] == pod["metadata"]["uid"]
