"""End to end: the real apiserver calls our webhook, the real scheduler calls our extender."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from localcluster import simulate
from localcluster.simulate import CRDS
from storkcore.kube import ApiError, Resource
from tests.e2e.helpers import (
    PODS,
    bound_pod,
    create_deployment,
    create_pod,
    events_for,
    local_claim_on,
    longhorn_workload,
    pods_of,
    unique,
    wait_bound_claim,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(cluster):
    name = unique("e2e")
    cluster.ensure_namespace(name)
    return name


def test_deployment_pod_goes_to_stork_and_lands_on_a_replica_node(kube, namespace):
    app, _ = longhorn_workload(kube, namespace, ["node-1", "node-4"])
    pod = bound_pod(kube, namespace, app)
    assert pod["spec"]["schedulerName"] == "stork"  # set by our webhook, through the real apiserver
    assert pod["spec"]["nodeName"] in ("node-1", "node-4")


def test_next_pod_moves_to_the_other_replica_when_a_longhorn_node_goes_down(kube, namespace):
    app, _ = longhorn_workload(kube, namespace, ["node-2", "node-5"])
    first = bound_pod(kube, namespace, app)["spec"]["nodeName"]
    other = {"node-2": "node-5", "node-5": "node-2"}[first]
    simulate.set_longhorn_node(kube, first, ready=False)
    try:
        time.sleep(1)  # let the extender's watch see it
        kube.delete(PODS, namespace, pods_of(kube, namespace, app)[0]["metadata"]["name"], {"gracePeriodSeconds": 0})
        replacement = wait_for(
            lambda: next((p for p in pods_of(kube, namespace, app) if p["spec"].get("nodeName")), None),
            60,
            "the replacement pod to be bound",
        )
        assert replacement["spec"]["nodeName"] == other
    finally:
        simulate.set_longhorn_node(kube, first, ready=True)


def test_pod_stays_pending_with_our_reason_when_every_replica_node_is_offline(kube, namespace):
    nodes = ["node-0", "node-3"]
    for node in nodes:
        simulate.set_longhorn_node(kube, node, ready=False)
    try:
        time.sleep(1)
        app, volume = longhorn_workload(kube, namespace, nodes)
        pod_name = wait_for(lambda: pods_of(kube, namespace, app), 30, "the pod")[0]["metadata"]["name"]
        reason = f"no replica of volume {volume} (PVC {namespace}/data) is on an Online node"

        def ours() -> list[dict]:
            found = [e for e in events_for(kube, namespace, pod_name) if reason in e.get("message", "")]
            # The scheduler's event and the extender's own are posted independently: wait for ours.
            return found if any(e["source"].get("component") == "stork-extender" for e in found) else []

        scheduler_event = wait_for(ours, 60, "a FailedScheduling event with our reason from stork-extender")
        assert {e["reason"] for e in scheduler_event} == {"FailedScheduling"}
        sources = {e["source"].get("component") for e in scheduler_event}
        assert "stork-extender" in sources  # our own event, besides the scheduler's
        assert not pods_of(kube, namespace, app)[0]["spec"].get("nodeName")
    finally:
        for node in nodes:
            simulate.set_longhorn_node(kube, node, ready=True)


def test_pods_without_driver_volumes_or_opted_out_stay_on_default_scheduler(kube, namespace):
    volume = unique("vol")
    simulate.add_longhorn_volume(kube, volume, ["node-1", "node-2"])
    simulate.longhorn_claim(kube, namespace, "data", volume)
    wait_bound_claim(kube, namespace, "data")
    create_pod(kube, namespace, "plain", [])
    create_pod(
        kube, namespace, "opted-out", ["data"], {"stork.libopenstorage.org/disable-admission-controller": "true"}
    )
    for name in ("plain", "opted-out"):
        pod = wait_for(lambda name=name: _bound(kube, namespace, name), 60, f"{name} bound")
        assert pod["spec"]["schedulerName"] == "default-scheduler"


def test_csi_local_volume_pod_lands_on_the_volume_node(kube, cluster, stork_csi):
    from tests.e2e.conftest import CSI_NAMESPACE_LABELS

    namespace = unique("e2e-csi")
    cluster.ensure_namespace(namespace, CSI_NAMESPACE_LABELS)
    local_claim_on(kube, namespace, "data", "node-3")
    create_deployment(kube, namespace, "db", ["data"])
    pod = bound_pod(kube, namespace, "db")
    assert pod["spec"]["schedulerName"] == "stork-csi"
    assert pod["spec"]["nodeName"] == "node-3"
    assert _counter(stork_csi.metrics(), "filter") >= 1  # our extender took part (one node fits: no scoring)


def test_pods_are_created_while_the_webhook_is_down(kube, namespace, longhorn):
    volume = unique("vol")
    simulate.add_longhorn_volume(kube, volume, ["node-1", "node-2"])
    simulate.longhorn_claim(kube, namespace, "data", volume)
    longhorn.stop_webhook()
    try:
        started = time.monotonic()
        created = create_pod(kube, namespace, "while-down", ["data"])
        elapsed = time.monotonic() - started
        assert created["metadata"]["name"] == "while-down"
        assert created["spec"]["schedulerName"] == "default-scheduler"  # not mutated, not blocked
        assert elapsed < 3.5  # within the webhook's timeoutSeconds (3)
    finally:
        longhorn.start_webhook()


def test_extender_is_called_with_node_names_within_its_timeout(kube, namespace, longhorn):
    app, _ = longhorn_workload(kube, namespace, ["node-0", "node-5"])
    bound_pod(kube, namespace, app)
    metrics = longhorn.metrics()
    assert _counter(metrics, "filter", mode="names") >= 1 and _counter(metrics, "filter", mode="nodes") == 0
    total = _value(metrics, r'stork_extender_request_duration_seconds_count\{verb="filter"\}')
    within = _value(metrics, r'stork_extender_request_duration_seconds_bucket\{le="2.5",verb="filter"\}')
    assert total >= 1 and within == total  # every answer well inside httpTimeout (5s)


def _served_by_granian(pid: int) -> bool:
    """Whether the server's worker processes (both servers fork them) loaded granian's library."""
    workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert workers, "no worker process"
    return any("_granian" in Path(f"/proc/{w}/maps").read_text() for w in workers)


def test_the_extender_serves_under_granian_by_default(longhorn):
    assert _served_by_granian(longhorn.control_plane.procs.running[f"{longhorn.name}-extender"].pid)


def test_the_extender_under_gunicorn_places_pods_through_the_real_scheduler(kube, namespace, longhorn):
    """`stork-extender --server gunicorn`: kube-scheduler's TLS client, NodeNames mode, our answer."""
    name = f"{longhorn.name}-extender"
    procs = longhorn.control_plane.procs
    procs.stop(name)
    try:
        longhorn.start_extender(["--server", "gunicorn"])
        pid = procs.running[name].pid
        assert not _served_by_granian(pid)
        app, _ = longhorn_workload(kube, namespace, ["node-3", "node-5"])
        assert bound_pod(kube, namespace, app)["spec"]["nodeName"] in ("node-3", "node-5")
        metrics = longhorn.metrics()
        assert _counter(metrics, "filter") >= 1 and _counter(metrics, "prioritize") >= 1
    finally:
        procs.stop(name)
        longhorn.start_extender()


def test_invalid_rule_is_denied_by_the_validating_webhook(kube, namespace):

    crd = yaml.safe_load(Path("manifests/base/rule-crd.yaml").read_text())
    try:
        kube.create(CRDS, "", crd)
    except ApiError as err:
        assert err.status == 409

    rules = Resource("stork.libopenstorage.org", "v1alpha1", "rules")
    wait_for(
        lambda: kube.list(Resource(rules.group, rules.version, rules.plural, namespace)) is not None, 30, "Rule CRD"
    )
    bad = {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "Rule",
        "metadata": {"name": "freeze"},
        "rules": [
            {"podSelector": {"app": "db"}, "actions": [{"type": "command", "value": "sleep 5", "background": True}]}
        ],
    }
    with pytest.raises(ApiError) as denied:
        kube.create(rules, namespace, bad)
    assert "rules[0].actions[0].value" in denied.value.body and "${WAIT_CMD}" in denied.value.body
    bad["rules"][0]["actions"][0]["value"] = "fsfreeze -f /data && ${WAIT_CMD}"
    assert kube.create(rules, namespace, bad)["metadata"]["name"] == "freeze"


def _bound(kube, namespace, name):
    pod = kube.get(PODS, namespace, name)
    return pod if pod and pod["spec"].get("nodeName") else None


def _counter(metrics: str, verb: str, mode: str = "names") -> float:
    return _value(metrics, rf'stork_extender_requests_total\{{code="200",mode="{mode}",verb="{verb}"\}}')


def _value(metrics: str, pattern: str) -> float:
    match = re.search(pattern + r" ([0-9.e+]+)", metrics)
    return float(match.group(1)) if match else 0.0


def test_a_cache_lists_in_pages_then_follows_the_watch(kube, namespace):
    """The real apiserver pages a LIST with continue tokens; the cache holds every page and
    resumes watching from the list's version (a change after the list arrives)."""
    from storkcore.cache import Reflector, Store

    configmaps = Resource("", "v1", "configmaps", namespace)
    for i in range(7):
        kube.create(configmaps, namespace, {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
    pages: list[int] = []

    class CountingPages:
        def list_pages(self, *args):
            for items, version in kube.list_pages(*args):
                pages.append(len(items))
                yield items, version

        def watch(self, *args):
            return kube.watch(*args)

    store = Store()
    reflector = Reflector(CountingPages(), configmaps, store)
    reflector.PAGE_SIZE = 3  # 7 objects (and the namespace's root CA, if created yet): 3 pages
    reflector.start()
    try:
        assert reflector.synced.wait(30)
        assert {f"cm-{i}" for i in range(7)} <= {o["metadata"]["name"] for o in store.list()}
        assert len(pages) >= 3 and max(pages) == 3
        kube.create(configmaps, namespace, {"metadata": {"name": "after-the-list"}})
        wait_for(lambda: store.get(namespace, "after-the-list") is not None, 30, "the watch to bring the new object")
    finally:
        reflector.stop()
