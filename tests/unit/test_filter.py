"""Filter: every step of SPEC §5, in both request modes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storkcore import annotations as ann
from storkcore.kube import NODES as NODE_STORE
from tests.builders import k8s_node, lh_replica, longhorn_world, pod, pvc, storage_class, topology_labels
from tests.unit.extender_client import ExtenderClient

NODES = ["n1", "n2", "n3", "n4"]
LAYOUT = {n: topology_labels(rack=str(i % 2)) for i, n in enumerate(NODES)}


def world_with(**kwargs):
    return longhorn_world(LAYOUT, {"vol1": ["n1", "n2"]}, **kwargs)


@pytest.fixture(params=["names", "nodes"])
def mode(request):
    return request.param


def test_pod_without_driver_volumes_keeps_every_node(mode):
    world = world_with()
    world.add(storage_class("other", "other.example.com"), pvc("foreign", storage_class_name="other", volume="x"))
    client = ExtenderClient(world)
    assert client.kept(pod("plain"), NODES, mode) == NODES
    assert client.kept(pod("foreign-user", ["foreign"]), NODES, mode) == NODES


def test_keeps_only_replica_holders_and_other_storage_nodes(mode):
    client = ExtenderClient(world_with())
    assert client.kept(pod("app", ["pvc-vol1"]), NODES, mode) == NODES
    body = client.filter(pod("app", ["pvc-vol1"]), NODES, mode)
    assert body["FailedNodes"] == {} and body["FailedAndUnresolvableNodes"] == {} and body["Error"] == ""


def test_missing_claim_fails_every_node_with_reason(mode):
    client = ExtenderClient(world_with())
    assert client.kept(pod("app", ["nope"]), NODES, mode) == []
    body = client.filter(pod("app", ["nope"]), NODES, mode)
    assert body["FailedAndUnresolvableNodes"] == {n: "PVC nope not found" for n in NODES}
    assert body["FailedNodes"] == body["FailedAndUnresolvableNodes"]  # for schedulers before 1.21
    assert client.reasons() == [("FailedScheduling", "0/4 nodes can host the pod's storage: PVC nope not found")]


def test_restore_in_progress_fails_every_node():
    world = world_with()
    world.cluster.pvc("default", "pvc-vol1")["metadata"]["annotations"] = {
        "stork.libopenstorage.org/restore-in-progress": "true"
    }
    body = ExtenderClient(world).filter(pod("app", ["pvc-vol1"]), NODES)
    assert set(body["FailedAndUnresolvableNodes"].values()) == {"PVC pvc-vol1 is being restored"}


def test_pending_immediate_claim_waits_but_wait_for_first_consumer_does_not():
    world = world_with()
    world.add(pvc("fresh"))  # class longhorn: Immediate binding
    client = ExtenderClient(world)
    body = client.filter(pod("app", ["fresh"]), NODES)
    assert set(body["FailedAndUnresolvableNodes"].values()) == {"waiting for PVC fresh to be bound"}

    world.add(storage_class("longhorn-wffc", "driver.longhorn.io", wait_for_consumer=True))
    world.add(pvc("late", storage_class_name="longhorn-wffc"))
    assert client.kept(pod("app", ["late"]), NODES) == NODES


def test_driver_error_fails_open_and_says_so():
    world = world_with()
    world.remove(world.cluster.store(world.lh["volumes"]).get("longhorn-system", "vol1"))
    client = ExtenderClient(world)
    assert client.kept(pod("app", ["pvc-vol1"]), NODES) == NODES
    ((reason, message),) = client.reasons()
    assert reason == "NonOptimumScheduling" and "Longhorn volume vol1 not found" in message


def test_operator_unschedulable_annotation_fails_node(mode):
    world = world_with()
    world.add(k8s_node("n3", labels=LAYOUT["n3"], annotations={"operator.libopenstorage.org/unschedulable": "true"}))
    body = ExtenderClient(world).filter(pod("app", ["pvc-vol1"]), NODES, mode)
    assert body["FailedAndUnresolvableNodes"] == {"n3": "node is marked operator.libopenstorage.org/unschedulable"}


def test_nodes_that_are_not_online_storage_nodes_fail(mode):
    world = world_with(offline=["n3"], storage_down=["n4"])
    world.add(k8s_node("plain"))
    client = ExtenderClient(world)
    body = client.filter(pod("app", ["pvc-vol1"]), [*NODES, "plain"], mode)
    assert body["FailedAndUnresolvableNodes"] == {
        "n3": "longhorn storage on node is Offline",
        "plain": "node is not a longhorn storage node",
    }
    assert client.kept(pod("app", ["pvc-vol1"]), NODES, mode) == ["n1", "n2", "n4"]  # StorageDown is kept


def test_every_node_fails_when_no_replica_is_online():
    client = ExtenderClient(world_with(offline=["n1"], storage_down=["n2"]))
    body = client.filter(pod("app", ["pvc-vol1"]), NODES)
    assert set(body["FailedAndUnresolvableNodes"]) == set(NODES)
    assert "no replica of volume vol1 (PVC default/pvc-vol1) is on an Online node" in client.reasons()[0][1]


def test_prefer_local_node_only_keeps_replica_holders(mode):
    world = longhorn_world(LAYOUT, {"vol1": ["n1", "n2"], "vol2": ["n2", "n3"]})
    the_pod = pod("app", ["pvc-vol1", "pvc-vol2"], annotations={"stork.libopenstorage.org/preferLocalNodeOnly": "true"})
    client = ExtenderClient(world)
    assert client.kept(the_pod, NODES, mode) == ["n2"]
    assert client.filter(the_pod, NODES, mode)["FailedAndUnresolvableNodes"]["n1"] == (
        "node holds no replica of volume vol2 (preferLocalNodeOnly)"
    )


def test_prefer_local_node_only_ignores_anti_hyperconverged_volumes():
    world = longhorn_world(LAYOUT, {"vol1": ["n1"], "share": ["n2"]}, access_modes={"share": "rwx"})
    the_pod = pod("app", ["pvc-vol1", "pvc-share"], annotations={"stork.libopenstorage.org/preferLocalNodeOnly": "1"})
    assert ExtenderClient(world).kept(the_pod, NODES) == ["n1"]


def test_prefer_remote_node_only_excludes_replica_nodes_of_anti_hyperconverged_volume():
    params = {"stork.libopenstorage.org/preferRemoteNodeOnly": "true"}
    world = longhorn_world(LAYOUT, {"share": ["n1", "n2"]}, access_modes={"share": "rwx"}, class_params=params)
    client = ExtenderClient(world)
    assert client.kept(pod("app", ["pvc-share"]), NODES) == ["n3", "n4"]
    # On a normal volume the label means nothing.
    normal = longhorn_world(LAYOUT, {"vol1": ["n1", "n2"]}, class_params=params)
    assert ExtenderClient(normal).kept(pod("app", ["pvc-vol1"]), NODES) == NODES


def test_prefer_remote_node_false_disables_remote_only():
    params = {
        "stork.libopenstorage.org/preferRemoteNodeOnly": "true",
        "stork.libopenstorage.org/preferRemoteNode": "false",
    }
    world = longhorn_world(LAYOUT, {"share": ["n1"]}, access_modes={"share": "rwx"}, class_params=params)
    assert ExtenderClient(world).kept(pod("app", ["pvc-share"]), NODES) == NODES


def test_windows_volume_skips_driver_filtering():
    world = longhorn_world(LAYOUT, {"vol1": ["n1"]}, offline=["n3"], class_params={"csi.storage.k8s.io/fstype": "NTFS"})
    world.add(k8s_node("plain"))
    assert ExtenderClient(world).kept(pod("app", ["pvc-vol1"]), [*NODES, "plain"]) == [*NODES, "plain"]


def test_node_names_unknown_to_the_cache_fail_as_not_found():
    client = ExtenderClient(world_with())
    body = client.filter(pod("app", ["pvc-vol1"]), ["n1", "ghost"])
    assert body["NodeNames"] == ["n1"]
    assert body["FailedNodes"] == {"ghost": "node not found"}
    assert body["FailedAndUnresolvableNodes"] == {}


def test_answer_follows_changes_in_cluster_state():
    world = world_with()
    client = ExtenderClient(world)
    assert client.kept(pod("app", ["pvc-vol1"]), NODES) == NODES
    from tests.builders import lh_node

    world.add(lh_node("n1", ready=False))  # the Longhorn node of n1 goes down
    assert client.kept(pod("app", ["pvc-vol1"]), NODES) == ["n2", "n3", "n4"]
    world.add(k8s_node("n2", labels={**LAYOUT["n2"], "extra": "x"}))  # node object changes
    assert client.kept(pod("app", ["pvc-vol1"]), NODES) == ["n2", "n3", "n4"]
    assert world.cluster.store(NODE_STORE).get("", "n2")["metadata"]["labels"]["extra"] == "x"


def test_failed_scheduling_event_is_not_repeated_for_retries():
    client = ExtenderClient(world_with())
    for _ in range(3):
        client.filter(pod("app", ["nope"]), NODES)
    assert len(client.reasons()) == 1


class UnreachableApi:
    def get(self, resource, namespace, name, timeout=3.0):
        raise ConnectionError("connection refused")


def test_api_unreachable_on_cache_miss_fails_open_with_event():
    world = world_with()
    world.cluster.kube = UnreachableApi()  # the claim is not cached and cannot be read
    client = ExtenderClient(world)
    assert client.kept(pod("app", ["not-cached"]), NODES) == NODES
    ((reason, message),) = client.reasons()
    assert reason == "NonOptimumScheduling" and "cannot read persistentvolumeclaims not-cached" in message


def test_filter_and_prioritize_of_one_pod_version_read_its_storage_once(monkeypatch):
    world = longhorn_world(LAYOUT, {"vol1": ["n1", "n2"], "vol2": ["n3"]})
    reads = []
    original = world.driver.volume
    monkeypatch.setattr(world.driver, "volume", lambda pvc: reads.append(pvc) or original(pvc))
    client = ExtenderClient(world)
    the_pod = pod("app", ["pvc-vol1", "pvc-vol2"])
    client.filter(the_pod, NODES)
    assert client.scores(the_pod, NODES)[3] == 50  # n4 shares a rack with vol1's n2
    assert len(reads) == 2  # one read per volume, shared by both verbs
    world.add(lh_replica("vol2-r9", "vol2", "n4"))  # the storage changed: read again
    assert client.scores(the_pod, NODES)[3] == 150
    assert len(reads) == 4
    newer = {**the_pod, "metadata": {**the_pod["metadata"], "resourceVersion": "999999"}}
    client.scores(newer, NODES)  # another version of the pod: read again
    assert len(reads) == 6


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_names_and_nodes_requests_filter_alike_and_warn_alike(data):
    """NodeNames requests take each node's reason from the node table when no per-pod rule
    applies, Nodes requests go candidate by candidate: for any node states, unschedulable
    marks, replicas, shared volumes, preferLocalNodeOnly and candidate order, the kept nodes,
    the failure maps and the events are the same."""
    names = [f"n{i}" for i in range(data.draw(st.integers(2, 7)))]
    states = data.draw(st.lists(st.sampled_from(["ok", "down", "offline"]), min_size=len(names), max_size=len(names)))
    volumes = {
        f"vol{v}": data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
        for v in range(data.draw(st.integers(1, 2)))
    }
    world = longhorn_world(
        {n: topology_labels(rack=str(i % 2)) for i, n in enumerate(names)},
        volumes,
        storage_down=[n for n, s in zip(names, states, strict=True) if s == "down"],
        offline=[n for n, s in zip(names, states, strict=True) if s == "offline"],
        access_modes={v: "rwx" for v in volumes if data.draw(st.booleans())},
    )
    world.add(k8s_node("plain"))  # no storage of the driver
    world.add(k8s_node("marked", annotations={ann.NODE_UNSCHEDULABLE: "true"}))
    candidates = data.draw(st.permutations([*names, "plain", "marked"]))
    candidates = candidates[: data.draw(st.integers(1, len(candidates)))]
    local_only = {ann.PREFER_LOCAL_NODE_ONLY: "true"} if data.draw(st.booleans()) else None
    the_pod = pod("app", [f"pvc-{v}" for v in volumes], annotations=local_only)
    by_names, by_nodes = ExtenderClient(world), ExtenderClient(world)
    named, noded = by_names.filter(the_pod, candidates, "names"), by_nodes.filter(the_pod, candidates, "nodes")
    assert named["NodeNames"] == [n["metadata"]["name"] for n in noded["Nodes"]["items"]]
    for key in ("FailedNodes", "FailedAndUnresolvableNodes", "Error"):
        assert named[key] == noded[key]
    assert by_names.reasons() == by_nodes.reasons()
