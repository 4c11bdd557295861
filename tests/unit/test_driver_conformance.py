"""The driver conformance suite: the same scenarios, the same answers, every driver.

Each scenario builds its layout through a backend (tests/drivers.py): Longhorn
objects, CSI node affinity, the simulated Portworx REST API, the simulated
LINSTOR controller. The extender app answers through Flask's test client. A new
driver adds a backend; a scenario its storage system cannot express is skipped
with the reason.
"""

from __future__ import annotations

import pytest

from tests.builders import pod, topology_labels
from tests.drivers import BACKENDS, IDENTITIES, Backend
from tests.unit.extender_client import ExtenderClient
from tests.unit.test_scoring import EXAMPLES, NODES, claims_pod, layout


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    chosen: Backend = BACKENDS[request.param]()
    yield chosen
    chosen.close()


def needs(backend: Backend, *features: str) -> None:
    for feature in features:
        if feature in backend.cannot:
            pytest.skip(f"{backend.name}: {backend.cannot[feature]}")


@pytest.mark.parametrize(("racks", "zones", "volumes", "down", "expected"), EXAMPLES)
def test_spec_scoring_examples(backend, racks, zones, volumes, down, expected):
    if down:
        needs(backend, "storage_down")
    world = backend.world(layout(racks, zones), volumes, storage_down=down)
    client = ExtenderClient(world)
    assert client.scores(claims_pod(*volumes), NODES) == expected
    assert client.scores(claims_pod(*volumes), NODES, mode="nodes") == expected


def test_filter_keeps_replica_holders_and_online_storage_nodes(backend):
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]}, offline=["n3"])
    client = ExtenderClient(world)
    body = client.filter(claims_pod("vol1"), NODES)
    assert body["NodeNames"] == ["n1", "n2", "n4", "n5"]
    assert body["FailedAndUnresolvableNodes"] == {"n3": f"{backend.name} storage on node is Offline"}


def test_storage_down_node_is_kept_but_scores_low(backend):
    needs(backend, "storage_down")
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]}, storage_down=["n1"])
    client = ExtenderClient(world)
    assert client.kept(claims_pod("vol1"), NODES) == NODES
    assert client.scores(claims_pod("vol1"), NODES) == [25, 100, 50, 50, 5]


def test_every_node_fails_when_no_replica_is_on_an_online_node(backend):
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]}, offline=["n1", "n2"])
    client = ExtenderClient(world)
    body = client.filter(claims_pod("vol1"), NODES)
    assert body["NodeNames"] == []
    assert set(body["FailedAndUnresolvableNodes"]) == set(NODES)
    assert "no replica of volume vol1 (PVC default/pvc-vol1) is on an Online node" in client.reasons()[0][1]


def test_anti_hyperconverged_volume_prefers_nodes_without_replicas(backend):
    needs(backend, "shared")
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"share": ["n1", "n2"]}, shared=["share"])
    assert ExtenderClient(world).scores(claims_pod("share"), NODES) == [5, 5, 100, 100, 100]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_kubernetes_nodes_match_storage_nodes(backend, identity):
    if identity != "name":
        needs(backend, "identity")
    nodes = {"n1": topology_labels(rack="1"), "n2": topology_labels(rack="1"), "n3": topology_labels(rack="2")}
    world = backend.world(nodes, {"vol1": ["n1"]}, identity=identity)
    client = ExtenderClient(world)
    assert client.kept(claims_pod("vol1"), ["n1", "n2", "n3"]) == ["n1", "n2", "n3"]
    assert client.scores(claims_pod("vol1"), ["n1", "n2", "n3"]) == [100, 50, 5]


def test_missing_claim_fails_every_node(backend):
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"]})
    body = ExtenderClient(world).filter(pod("app", ["pvc-absent"]), NODES)
    assert body["FailedAndUnresolvableNodes"] == {n: "PVC pvc-absent not found" for n in NODES}


def test_volume_unknown_to_the_storage_system_keeps_every_node(backend):
    needs(backend, "unknown_volume")
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"], "vol2": ["n2"]})
    backend.forget_volume(world, "vol2")
    client = ExtenderClient(world)
    assert client.kept(claims_pod("vol2"), NODES) == NODES
    assert client.scores(claims_pod("vol1"), NODES) == [100, 5, 50, 5, 5]  # the known volume is unaffected


def test_answers_follow_replicas_that_moved(backend):
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"]})
    client = ExtenderClient(world)
    assert client.scores(claims_pod("vol1"), NODES) == [100, 5, 50, 5, 5]
    backend.set_replicas(world, "vol1", ["n5"])
    assert client.scores(claims_pod("vol1"), NODES) == [5, 5, 5, 5, 100]


# -- topology: where the labels are (SPEC §2, "Topology of a node") ----------------------------

# (level, labels per node n1..n5, expected scores) for one volume with replicas on n1 and n2.
TOPOLOGY_CASES = [
    ("rack", [topology_labels(rack=r) for r in "12123"], [100, 100, 50, 50, 5]),
    ("zone", [topology_labels(zone=z) for z in "ababc"], [100, 100, 25, 25, 5]),
    ("region", [topology_labels(region=r) for r in "ababc"], [100, 100, 10, 10, 5]),
]


@pytest.mark.parametrize("labels_on", ["kubernetes", "storage"])
@pytest.mark.parametrize(("level", "labels", "expected"), TOPOLOGY_CASES, ids=[c[0] for c in TOPOLOGY_CASES])
def test_topology_from_either_side(backend, labels_on, level, labels, expected):
    """The Kubernetes node's labels are what counts (as upstream reads them); a storage system's
    own node labels fill in where the Kubernetes node has none."""
    if labels_on == "storage":
        needs(backend, "labels_on_storage")
        if level == "rack":
            needs(backend, "rack_on_storage")
    world = backend.world(dict(zip(NODES, labels, strict=True)), {"vol1": ["n1", "n2"]}, labels_on=labels_on)
    assert ExtenderClient(world).scores(claims_pod("vol1"), NODES) == expected


def test_the_kubernetes_nodes_labels_win_over_the_storage_systems(backend):
    needs(backend, "labels_on_storage", "rack_on_storage")
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]}, labels_on="kubernetes")
    if backend.name in ("pxd", "linstor"):  # the storage system says otherwise: every node in one rack
        for n in NODES:
            world.storage.set_node_labels(backend.ids[n], topology_labels(rack="9"))  # type: ignore[attr-defined]
        backend.sync(world)
    assert ExtenderClient(world).scores(claims_pod("vol1"), NODES) == [100, 100, 50, 50, 5]


@pytest.mark.parametrize("driver", ["pxd", "linstor"])
def test_upstream_rack_labels_on_kubernetes_nodes_are_understood(driver):
    """A cluster labelled for upstream Stork (`px/rack`, `linstor/rack`) keeps its racks."""
    backend = BACKENDS[driver]()
    try:
        key = {"pxd": "px/rack", "linstor": "linstor/rack"}[driver]
        nodes = {n: {key: r} for n, r in zip(NODES, "12123", strict=True)}
        world = backend.world(nodes, {"vol1": ["n1", "n2"]}, labels_on="kubernetes")
        assert ExtenderClient(world).scores(claims_pod("vol1"), NODES) == [100, 100, 50, 50, 5]
    finally:
        backend.close()
