"""Locality at scale (SPEC §5): the webhook holds controller-owned pods to their replica nodes,
keeps the pod's own constraints meaning what they meant, and fails open; the controller
releases a held pod that no replica node can take."""

from __future__ import annotations

import base64
import datetime
import json

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.locality import FallbackSettings, LocalityFallback
from storkcore import annotations as ann
from storkcore.events import EventRecorder
from storkcore.kube import NODES, PVCS
from storkcore.locality import decide_locality, tolerates
from storkcore.nodetable import NodeTable
from storkcore.selectors import node_matches_selector
from tests.builders import longhorn_world, pod
from tests.unit.test_webhook import review
from webhook.admission import AdmissionSettings
from webhook.app import create_app

HOSTNAME_LABEL = "kubernetes.io/hostname"
NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
NODES5 = {f"n{i}": {"zone": "a" if i < 3 else "b"} for i in range(1, 6)}
OWNER = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9", "uid": "rs-1", "controller": True}]


def owned_pod(name="app-1", claims=("pvc-vol1",), annotations=None, **spec):
    p = pod(name, claims, annotations=annotations)
    p["metadata"]["ownerReferences"] = OWNER
    p["spec"].update(spec)
    return p


@pytest.fixture
def world():
    return longhorn_world(NODES5, {"vol1": ["n1", "n2"], "vol2": ["n2", "n3"], "solo": ["n4"]})


class Admission:
    def __init__(self, world, now=NOW):
        table = NodeTable(world.driver)
        self.http = create_app(
            world.driver,
            AdmissionSettings(),
            locality_of=lambda p, ns: decide_locality(world.driver, table, p, ns, now),
        ).test_client()

    def admit(self, obj):
        resp = self.http.post("/mutate", data=orjson.dumps(review(obj)), content_type="application/json")
        assert resp.status_code == 200
        response = orjson.loads(resp.data)["response"]
        assert response["allowed"] is True
        patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
        return jsonpatch.apply_patch(obj, patch)


def allowed_nodes(world, admitted):
    """The nodes kube-scheduler's node affinity and node selector would allow for this pod."""
    required = admitted["spec"].get("affinity", {}).get("nodeAffinity", {})
    required = required.get("requiredDuringSchedulingIgnoredDuringExecution")
    selector = admitted["spec"].get("nodeSelector", {})
    found = set()
    for node in world.cluster.store(NODES).list():
        labels = node["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        if required is None or node_matches_selector(node, required):
            found.add(node["metadata"]["name"])
    return found


def test_owned_pod_is_held_to_its_replica_nodes(world):
    admitted = Admission(world).admit(owned_pod())
    assert admitted["spec"]["schedulerName"] == "stork"
    assert allowed_nodes(world, admitted) == {"n1", "n2"}
    assert admitted["metadata"]["annotations"][ann.REPLICA_NODES] == "n1,n2"


def test_two_volumes_hold_to_every_node_with_a_replica_of_either(world):
    admitted = Admission(world).admit(owned_pod(claims=("pvc-vol1", "pvc-vol2")))
    assert allowed_nodes(world, admitted) == {"n1", "n2", "n3"}


def test_a_bare_pod_is_not_held_and_says_why(world):
    admitted = Admission(world).admit(pod("bare", ["pvc-vol1"]))
    assert admitted["spec"]["schedulerName"] == "stork"
    assert "affinity" not in admitted["spec"]
    assert "no controller owns the pod" in admitted["metadata"]["annotations"][ann.LOCALITY]


def test_a_bare_prefer_local_only_pod_is_held_since_only_replica_nodes_pass_its_filter(world):
    admitted = Admission(world).admit(pod("bare", ["pvc-vol1"], annotations={ann.PREFER_LOCAL_NODE_ONLY: "true"}))
    assert allowed_nodes(world, admitted) == {"n1", "n2"}


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (
            {
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
                ]
            },
            "topologySpreadConstraints",
        ),
        ({"nodeName": "n5"}, "names its node"),
    ],
)
def test_pods_whose_meaning_a_constraint_would_change_are_not_held(world, extra, why):
    admitted = Admission(world).admit(owned_pod(**extra))
    assert "affinity" not in admitted["spec"]
    assert why in admitted["metadata"]["annotations"].get(ann.LOCALITY, "") or admitted["spec"].get("nodeName")


def test_daemonset_pods_and_opted_out_pods_are_not_held(world):
    daemon = owned_pod()
    daemon["metadata"]["ownerReferences"] = [{**OWNER[0], "kind": "DaemonSet"}]
    assert "affinity" not in Admission(world).admit(daemon)["spec"]
    no_locality = owned_pod(annotations={ann.DISABLE_HYPERCONVERGENCE: "true"})
    assert "affinity" not in Admission(world).admit(no_locality)["spec"]


def node_of(world, name):
    return world.cluster.store(NODES).get("", name)


@pytest.mark.parametrize(
    ("change", "tolerations", "held_to"),
    [
        (lambda n: n["spec"].update(unschedulable=True), [], {"n2"}),  # cordoned
        (lambda n: n["spec"].update(taints=[{"key": "gpu", "value": "x", "effect": "NoSchedule"}]), [], {"n2"}),
        (
            lambda n: n["spec"].update(taints=[{"key": "gpu", "value": "x", "effect": "NoSchedule"}]),
            [{"key": "gpu", "operator": "Equal", "value": "x", "effect": "NoSchedule"}],
            {"n1", "n2"},
        ),
        (lambda n: n["spec"].update(taints=[{"key": "soft", "effect": "PreferNoSchedule"}]), [], {"n1", "n2"}),
        (lambda n: n["status"].update(conditions=[{"type": "Ready", "status": "False"}]), [], {"n2"}),
    ],
)
def test_replica_nodes_that_cannot_take_the_pod_are_left_out(world, change, tolerations, held_to):
    node = node_of(world, "n1")
    updated = json.loads(json.dumps(node))
    updated["metadata"]["resourceVersion"] += "1"
    change(updated)
    world.cluster.store(NODES).upsert(updated)
    admitted = Admission(world).admit(owned_pod(tolerations=tolerations))
    assert allowed_nodes(world, admitted) == held_to


def test_offline_and_storage_down_replicas_are_left_out_and_none_left_fails_open():
    world = longhorn_world(NODES5, {"vol1": ["n1", "n2"]}, storage_down=["n1"], offline=["n2"])
    admitted = Admission(world).admit(owned_pod())
    assert "affinity" not in admitted["spec"]
    assert "no replica node can take the pod" in admitted["metadata"]["annotations"][ann.LOCALITY]
    world = longhorn_world(NODES5, {"vol1": ["n1", "n2"]}, storage_down=["n1"])
    assert allowed_nodes(world, Admission(world).admit(owned_pod())) == {"n2"}


def test_anti_hyperconverged_volumes_are_not_held(world):
    world = longhorn_world(NODES5, {"vol1": ["n1", "n2"]}, access_modes={"vol1": "rwx"})
    assert "affinity" not in Admission(world).admit(owned_pod())["spec"]


def test_the_pods_own_node_selector_narrows_the_replica_nodes(world):
    admitted = Admission(world).admit(owned_pod(claims=("pvc-vol2",), nodeSelector={"zone": "a"}))
    assert admitted["metadata"]["annotations"][ann.REPLICA_NODES] == "n2"
    assert allowed_nodes(world, admitted) == {"n2"}
    outside = Admission(world).admit(owned_pod(claims=("pvc-solo",), nodeSelector={"zone": "a"}))
    assert "affinity" not in outside["spec"] and allowed_nodes(world, outside) == {"n1", "n2"}


def test_own_affinity_in_two_terms_keeps_its_meaning(world):
    terms = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]},
        {},  # selects nothing, and must go on selecting nothing
    ]
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    admitted = Admission(world).admit(owned_pod(claims=("pvc-vol1", "pvc-vol2"), affinity=affinity))
    assert allowed_nodes(world, admitted) == {"n1", "n2", "n3"}
    # One term per own non-empty term and replica node, each naming its node (kube-scheduler 1.27+
    # then filters only those nodes); the empty term selected nothing and is gone.
    got = admitted["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert len(got["nodeSelectorTerms"]) == 2 * 3
    assert all(
        t["matchFields"][-1]["key"] == "metadata.name" and len(t["matchFields"][-1]["values"]) == 1
        for t in got["nodeSelectorTerms"]
    )
    # Its preferred terms, pod affinity and tolerations are untouched.
    preferred = {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference": terms[0]}]}
    admitted = Admission(world).admit(owned_pod(affinity={"nodeAffinity": preferred}))
    assert (
        admitted["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        == (preferred["preferredDuringSchedulingIgnoredDuringExecution"])
    )
    assert allowed_nodes(world, admitted) == {"n1", "n2"}


requirement = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["zone", HOSTNAME_LABEL, "missing"]),
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
        "values": st.lists(st.sampled_from(["a", "b", "n1", "n2", "n3"]), min_size=1, max_size=2),
    }
)
term = st.fixed_dictionaries({"matchExpressions": st.lists(requirement, max_size=2)})


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(terms=st.lists(term, min_size=1, max_size=3), claims=st.sampled_from([("pvc-vol1",), ("pvc-vol1", "pvc-vol2")]))
def test_held_pods_may_go_exactly_where_they_could_go_before_and_that_hold_a_replica(world, terms, claims):
    for t in terms:
        for r in t["matchExpressions"]:
            if r["operator"] in ("Exists", "DoesNotExist"):
                r.pop("values")
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    before = owned_pod(claims=claims, affinity=affinity)
    admitted = Admission(world).admit(json.loads(json.dumps(before)))
    replicas = {"n1", "n2"} | ({"n2", "n3"} if len(claims) == 2 else set())
    could = allowed_nodes(world, before)
    if could & replicas:
        assert allowed_nodes(world, admitted) == could & replicas
    else:  # no replica node is allowed by the pod's own affinity: not held at all
        assert allowed_nodes(world, admitted) == could


def test_a_claim_in_its_fallback_window_is_not_held_until_the_window_ends(world):
    claim = world.cluster.store(PVCS).get("default", "pvc-vol1")
    claim["metadata"]["annotations"] = {ann.LOCALITY_FALLBACK_UNTIL: "2026-12-03T12:10:00Z"}
    admitted = Admission(world).admit(owned_pod())
    assert "affinity" not in admitted["spec"]
    assert "held to them again after 2026-12-03T12:10:00Z" in admitted["metadata"]["annotations"][ann.LOCALITY]
    later = Admission(world, now=NOW + datetime.timedelta(minutes=11)).admit(owned_pod())
    assert allowed_nodes(world, later) == {"n1", "n2"}


def test_a_fault_in_the_locality_decision_still_sends_the_pod_to_stork(world):
    broken = create_app(world.driver, AdmissionSettings(), locality_of=lambda p, ns: 1 / 0).test_client()
    the_pod = owned_pod()
    resp = broken.post("/mutate", data=orjson.dumps(review(the_pod)), content_type="application/json")
    patch = json.loads(base64.b64decode(orjson.loads(resp.data)["response"]["patch"]))
    admitted = jsonpatch.apply_patch(the_pod, patch)
    assert admitted["spec"]["schedulerName"] == "stork"
    assert admitted["metadata"]["annotations"][ann.LOCALITY] == "not held to replica nodes: internal error"


def test_toleration_rules():
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates({"operator": "Exists"}, taint)
    assert tolerates({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, taint)
    assert tolerates({"key": "k", "value": "v"}, taint)
    assert not tolerates({"key": "k", "value": "w"}, taint)
    assert not tolerates({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint)
    assert not tolerates({"value": "v"}, taint)


# -- the controller's way back ------------------------------------------------------------


class FakeFallbackCluster:
    def __init__(self, world, pods):
        self.world = world
        self.pods = pods
        self.deleted = []

    def pending_pods(self):
        return [p for p in self.pods if not p["spec"].get("nodeName")]

    def mark_claim(self, namespace, claim, until):
        found = self.world.cluster.store(PVCS).get(namespace, claim)
        if found is None:
            return None
        found.setdefault("metadata", {}).setdefault("annotations", {})[ann.LOCALITY_FALLBACK_UNTIL] = until
        return found

    def delete_pod(self, p):
        self.deleted.append(p["metadata"]["name"])
        self.pods.remove(p)


def unschedulable(p, since):
    p["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) didn't match node selector.",
            "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ]
    return p


def fallback(world, pods, now, leader=True):
    events = EventRecorder(None, "stork-controller")
    cluster = FakeFallbackCluster(world, pods)
    part = LocalityFallback(cluster, events, FallbackSettings(after=5, window=600), lambda: now, lambda: leader)
    return part, cluster, events


def test_a_held_pod_that_no_replica_node_takes_is_recreated_without_the_constraint(world):
    held = Admission(world).admit(owned_pod())
    unschedulable(held, NOW)
    part, cluster, events = fallback(world, [held], NOW + datetime.timedelta(seconds=4))
    part.tick()
    assert cluster.deleted == []  # not yet: the scheduler may still find room
    part.now = lambda: NOW + datetime.timedelta(seconds=6)
    part.tick()
    assert cluster.deleted == ["app-1"]
    claim = world.cluster.store(PVCS).get("default", "pvc-vol1")
    assert claim["metadata"]["annotations"][ann.LOCALITY_FALLBACK_UNTIL] == "2026-12-03T12:10:06Z"
    reasons = [(e["involvedObject"]["kind"], e["reason"]) for e in events.posted]
    assert reasons == [("PersistentVolumeClaim", "LocalityFallback"), ("Pod", "LocalityFallback")]
    assert "replica nodes n1, n2 cannot take the pod (0/5 nodes are available" in events.posted[1]["message"]
    # The controller's replacement is admitted without the constraint, and says why.
    replacement = Admission(world, now=NOW + datetime.timedelta(seconds=7)).admit(owned_pod("app-2"))
    assert "affinity" not in replacement["spec"]
    assert "could not be placed on its replica nodes" in replacement["metadata"]["annotations"][ann.LOCALITY]


@pytest.mark.parametrize("case", ["prefer-local-only", "not-leader", "bound", "not-held", "scheduled-later"])
def test_the_fallback_leaves_alone_what_it_must_not_touch(world, case):
    annotations = {ann.PREFER_LOCAL_NODE_ONLY: "true"} if case == "prefer-local-only" else None
    held = Admission(world).admit(owned_pod(annotations=annotations))
    unschedulable(held, NOW)
    if case == "bound":
        held["spec"]["nodeName"] = "n1"
    if case == "not-held":
        held["metadata"]["annotations"].pop(ann.REPLICA_NODES)
    if case == "scheduled-later":
        held["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
    part, cluster, _ = fallback(world, [held], NOW + datetime.timedelta(seconds=60), leader=case != "not-leader")
    part.tick()
    assert cluster.deleted == []
