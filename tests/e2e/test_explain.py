"""`storkctl explain` against the real control plane: for pods placed by the real scheduler, it
prints the per-node verdicts and scores that the extender answers, for the five examples of
SPEC §5 (each on five nodes of its own, labelled as the example says)."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request

import pytest

from localcluster import simulate
from storkcore.kube import NODES, PODS
from tests.e2e.helpers import create_pod, unique, wait_bound_claim, wait_for
from tests.processes import console_script

pytestmark = pytest.mark.e2e

RACK = "stork.libopenstorage.org/rack"
ZONE = "topology.kubernetes.io/zone"
LAYOUTS = {  # example set -> per node (rack, zone)
    "x1": [("1", ""), ("2", ""), ("1", ""), ("2", ""), ("3", "")],
    "x2": [("1", ""), ("2", ""), ("3", ""), ("1", ""), ("2", "")],
    "x4": [("1", "a"), ("2", "a"), ("1", "b"), ("2", "b"), ("1", "c")],
}
EXAMPLES = [  # (layout, volumes as replica node numbers, StorageDown node numbers, expected scores n1..n5)
    ("x1", [[1, 2]], [], [100, 100, 50, 50, 5]),
    ("x2", [[1, 2], [2, 3]], [], [100, 200, 100, 50, 100]),
    ("x2", [[1, 2], [2, 3]], [3], [100, 200, 25, 50, 100]),
    ("x4", [[1, 2], [2, 3]], [], [125, 200, 100, 25, 5]),
    ("x4", [[1, 2], [2, 3]], [1], [37, 200, 100, 25, 5]),
]


@pytest.fixture(scope="module")
def example_nodes(kube):
    names = []
    for layout, nodes in LAYOUTS.items():
        for i, (rack, zone) in enumerate(nodes, start=1):
            name = f"{layout}-n{i}"
            labels = {RACK: rack, **({ZONE: f"{layout}-{zone}"} if zone else {})}
            simulate.add_node(kube, name, labels, internal_ip=f"10.9.{len(names) // 5}.{i}")
            simulate.add_longhorn_node(kube, name, zone=f"{layout}-{zone}" if zone else "")
            names.append(name)
    yield names
    for name in names:  # leave the cluster as the other tests expect it
        kube.delete(NODES, "", name)
        kube.delete(simulate.LH["nodes"], simulate.LONGHORN_NAMESPACE, name)


def extender_answers(longhorn, pod: dict, names: list[str]) -> tuple[dict, dict]:
    """What the running extender answers for this pod and these nodes: (filter, scores)."""
    context = ssl.create_default_context(cafile=str(longhorn.tls / "ca.crt"))
    body = json.dumps({"Pod": pod, "NodeNames": names}).encode()

    def post(verb: str):
        request = urllib.request.Request(
            f"{longhorn.extender_url}/{verb}", body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return json.loads(resp.read())

    return post("filter"), {p["Host"]: p["Score"] for p in post("prioritize")}


def explain(cluster, namespace: str, pod: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [
        console_script("storkctl"),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "explain",
        "pod",
        pod,
        "-n",
        namespace,
        "--driver",
        "longhorn",
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("layout", "volumes", "down", "expected"), EXAMPLES, ids=[f"example-{i + 1}" for i in range(5)]
)
def test_explain_shows_what_the_extender_answered(
    cluster, kube, longhorn, example_nodes, layout, volumes, down, expected
):
    namespace = unique("explain")
    cluster.ensure_namespace(namespace)
    for n in down:
        simulate.set_longhorn_node(kube, f"{layout}-n{n}", ready=True, disk_ready=False)
    try:
        claims = []
        for j, replicas in enumerate(volumes):
            volume = unique("xvol")
            simulate.add_longhorn_volume(kube, volume, [f"{layout}-n{n}" for n in replicas])
            simulate.longhorn_claim(kube, namespace, f"c{j}", volume)
            wait_bound_claim(kube, namespace, f"c{j}")
            claims.append(f"c{j}")
        create_pod(kube, namespace, "app", claims)
        pod = wait_for(
            lambda: (p := kube.get(PODS, namespace, "app")) and p["spec"].get("nodeName") and p, 60, "placement"
        )
        run = explain(cluster, namespace, "app", "-o", "json")
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        names = [row["node"] for row in report["nodes"]]
        filtered, scores = extender_answers(longhorn, pod, names)
    finally:
        for n in down:
            simulate.set_longhorn_node(kube, f"{layout}-n{n}", ready=True, disk_ready=True)
    kept = set(filtered["NodeNames"])
    for row in report["nodes"]:  # the same verdict and score as the extender, node by node
        assert (row["verdict"] == "kept") == (row["node"] in kept), row
        assert row["reason"] == (filtered["FailedNodes"] or {}).get(row["node"], ""), row
        assert row["score"] == scores[row["node"]], row
    mine = {row["node"]: row["score"] for row in report["nodes"]}
    assert [mine[f"{layout}-n{i}"] for i in range(1, 6)] == expected  # the spec's numbers, on a real cluster
    assert report["chosen"] == pod["spec"]["nodeName"]
    holders = {f"{layout}-n{n}" for replicas in volumes for n in replicas}
    assert report["chosen_holds_replica"] == (report["chosen"] in holders)
    table = explain(cluster, namespace, "app").stdout
    assert f"Scheduled on {pod['spec']['nodeName']}" in table
    line = next(x for x in table.splitlines() if x.startswith(f"{layout}-n2 "))
    assert line.split()[1:3] == ["kept", str(expected[1])] and "replica 100" in line


def test_explain_says_when_a_pod_is_not_storks_and_when_it_does_not_exist(cluster, kube):
    namespace = unique("explain")
    cluster.ensure_namespace(namespace)
    wait_for(lambda: create_pod(kube, namespace, "plain", []), 30, "the namespace's service account")
    run = explain(cluster, namespace, "plain")
    assert run.returncode == 0 and "not stork's: none of its claims (none) is a longhorn volume" in run.stdout
    missing = explain(cluster, namespace, "nope")
    assert missing.returncode == 1 and f"pod {namespace}/nope not found" in missing.stderr
