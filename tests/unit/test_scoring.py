"""Prioritize: the spec's scoring examples and every scoring rule (SPEC §5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import csi_world, k8s_node, longhorn_world, pod, topology_labels
from tests.unit.extender_client import ExtenderClient

NODES = ["n1", "n2", "n3", "n4", "n5"]


def layout(racks: list[str], zones: list[str] | None = None) -> dict[str, dict[str, str]]:
    zones = zones or [""] * len(racks)
    return {n: topology_labels(rack=r, zone=z) for n, r, z in zip(NODES, racks, zones, strict=True)}


def claims_pod(*volumes: str, **kwargs) -> dict:
    return pod("app", [f"pvc-{v}" for v in volumes], **kwargs)


EXAMPLES = [
    # (racks, zones, volumes, storage-down nodes, expected scores)
    (["1", "2", "1", "2", "3"], None, {"vol1": ["n1", "n2"]}, [], [100, 100, 50, 50, 5]),
    (["1", "2", "3", "1", "2"], None, {"vol1": ["n1", "n2"], "vol2": ["n2", "n3"]}, [], [100, 200, 100, 50, 100]),
    (["1", "2", "3", "1", "2"], None, {"vol1": ["n1", "n2"], "vol2": ["n2", "n3"]}, ["n3"], [100, 200, 25, 50, 100]),
    (
        ["1", "2", "1", "2", "1"],
        ["a", "a", "b", "b", "c"],
        {"vol1": ["n1", "n2"], "vol2": ["n2", "n3"]},
        [],
        [125, 200, 100, 25, 5],
    ),
    (
        ["1", "2", "1", "2", "1"],
        ["a", "a", "b", "b", "c"],
        {"vol1": ["n1", "n2"], "vol2": ["n2", "n3"]},
        ["n1"],
        [37, 200, 100, 25, 5],
    ),
]


@pytest.mark.parametrize("mode", ["names", "nodes"])
@pytest.mark.parametrize(("racks", "zones", "volumes", "down", "expected"), EXAMPLES)
def test_spec_examples_longhorn(racks, zones, volumes, down, expected, mode):
    world = longhorn_world(layout(racks, zones), volumes, storage_down=down)
    assert ExtenderClient(world).scores(claims_pod(*volumes), NODES, mode) == expected


# The csi driver has no StorageDown state (a node is Ready with the driver, or not),
# so the examples that need it are covered by the Longhorn shapes above.
@pytest.mark.parametrize(("racks", "zones", "volumes", "down", "expected"), [e for e in EXAMPLES if not e[3]])
def test_spec_examples_csi(racks, zones, volumes, down, expected):
    world = csi_world(layout(racks, zones), volumes)
    assert ExtenderClient(world).scores(claims_pod(*volumes), NODES) == expected


def test_equal_rack_names_in_different_zones_do_not_match():
    world = longhorn_world(layout(["1", "9", "1", "2", "2"], ["a", "a", "b", "c", "c"]), {"vol1": ["n1"]})
    # n3 has rack 1 like n1 but lives in zone b: no rack score, no zone score.
    assert ExtenderClient(world).scores(claims_pod("vol1"), NODES) == [100, 25, 5, 5, 5]


def test_node_without_rack_label_in_replica_zone_scores_zone_level():
    nodes = {"n1": topology_labels(rack="1", zone="a"), "n2": topology_labels(zone="a")}
    world = longhorn_world(nodes, {"vol1": ["n1"]})
    assert ExtenderClient(world).scores(claims_pod("vol1"), ["n1", "n2"]) == [100, 25]


def test_region_level_scores_ten():
    nodes = {
        "n1": topology_labels(zone="a", region="r1"),
        "n2": topology_labels(zone="b", region="r1"),
        "n3": topology_labels(zone="c", region="r2"),
    }
    world = longhorn_world(nodes, {"vol1": ["n1"]})
    assert ExtenderClient(world).scores(claims_pod("vol1"), ["n1", "n2", "n3"]) == [100, 10, 5]


def test_offline_replica_node_gives_no_locality_and_scores_floor():
    world = longhorn_world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]}, offline=["n1"])
    # n1 is offline: 5; its rack-mate n3 gets nothing from it.
    assert ExtenderClient(world).scores(claims_pod("vol1"), NODES) == [5, 100, 5, 50, 5]


def test_node_unknown_to_driver_scores_zero():
    world = longhorn_world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"]})
    from tests.builders import k8s_node

    world.add(k8s_node("plain", labels=topology_labels(rack="1")))  # a Kubernetes node without Longhorn
    assert ExtenderClient(world).scores(claims_pod("vol1"), ["n1", "plain", "n5"]) == [100, 0, 5]


def test_skip_scheduler_scoring_on_claim_annotation_or_class_parameter():
    world = longhorn_world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"], "vol2": ["n2"]})
    claim = world.cluster.pvc("default", "pvc-vol2")
    claim["metadata"]["annotations"] = {"stork.libopenstorage.org/skipSchedulerScoring": "true"}
    assert ExtenderClient(world).scores(claims_pod("vol1", "vol2"), NODES) == [100, 5, 50, 5, 5]

    skipped_everywhere = longhorn_world(
        layout(["1", "2", "1", "2", "3"]),
        {"vol1": ["n1"]},
        class_params={"stork.libopenstorage.org/skipSchedulerScoring": "true"},
    )
    assert ExtenderClient(skipped_everywhere).scores(claims_pod("vol1"), NODES) == [5] * 5


def test_disable_hyperconvergence_gives_every_node_five():
    world = longhorn_world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]})
    the_pod = claims_pod("vol1", annotations={"stork.libopenstorage.org/disableHyperconvergence": "true"})
    assert ExtenderClient(world).scores(the_pod, NODES) == [5] * 5


def test_anti_hyperconverged_volume_prefers_nodes_without_replicas():
    world = longhorn_world(layout(["1", "2", "1", "2", "3"]), {"share": ["n1", "n2"]}, access_modes={"share": "rwx"})
    # Replica nodes 5; every other Online node 0 + 100, and the floor comes last: exactly 100.
    assert ExtenderClient(world).scores(claims_pod("share"), NODES) == [5, 5, 100, 100, 100]


def test_anti_hyperconvergence_turned_off_scores_by_locality():
    world = longhorn_world(
        layout(["1", "2", "1", "2", "3"]),
        {"share": ["n1", "n2"]},
        access_modes={"share": "rwx"},
        class_params={"stork.libopenstorage.org/preferRemoteNode": "false"},
    )
    assert ExtenderClient(world).scores(claims_pod("share"), NODES) == [100, 100, 50, 50, 5]


def test_anti_hyperconverged_and_normal_volume_together():
    world = longhorn_world(
        layout(["1", "2", "1", "2", "3"]),
        {"data": ["n3"], "share": ["n1"]},
        access_modes={"share": "rwx"},
    )
    # data: n3 100, rack-mate n1 50; then share sets n1 to 5 and adds 100 elsewhere.
    assert ExtenderClient(world).scores(claims_pod("data", "share"), NODES) == [5, 100, 200, 100, 100]


def test_windows_volume_is_not_scored():
    world = longhorn_world(
        layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"]}, class_params={"csi.storage.k8s.io/fstype": "ntfs"}
    )
    assert ExtenderClient(world).scores(claims_pod("vol1"), NODES) == [5] * 5


def test_pod_without_driver_volumes_gets_five_everywhere_as_upstream():
    world = longhorn_world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"]})
    assert ExtenderClient(world).scores(pod("plain"), NODES) == [5] * 5
    assert ExtenderClient(world).scores(pod("plain"), NODES, mode="nodes") == [5] * 5


def test_anti_hyperconverged_volume_on_a_storage_down_or_offline_node():
    world = longhorn_world(
        layout(["1", "2", "1", "2", "3"]),
        {"share": ["n1"]},
        access_modes={"share": "rwx"},
        storage_down=["n3"],
        offline=["n4"],
    )
    # n1 holds the replica: 5. Online n2, n5: 100. StorageDown n3 and Offline n4 get no bonus: floor 5.
    assert ExtenderClient(world).scores(claims_pod("share"), NODES) == [5, 100, 5, 5, 100]


def test_normalized_mode_scales_into_zero_to_ten_keeping_order():
    world = longhorn_world(
        layout(["1", "2", "1", "2", "1"], ["a", "a", "b", "b", "c"]), {"vol1": ["n1", "n2"], "vol2": ["n2", "n3"]}
    )
    scores = ExtenderClient(world, score_mode="normalized").scores(claims_pod("vol1", "vol2"), NODES)
    assert scores == [6, 10, 5, 1, 0]  # from [125, 200, 100, 25, 5]
    assert all(0 <= s <= 10 for s in scores)


@pytest.mark.parametrize("node_count", [5, 150])
def test_non_optimum_event_when_no_candidate_holds_a_replica(node_count):
    nodes = {f"n{i}": topology_labels(rack=str(i % 3)) for i in range(1, node_count + 1)}
    client = ExtenderClient(longhorn_world(nodes, {"vol1": ["n1"]}))
    client.scores(claims_pod("vol1"), ["n3", "n4"])
    ((reason, message),) = client.reasons()
    assert reason == "NonOptimumScheduling"
    assert message.startswith(f"none of the 2 candidate nodes (of {node_count}) holds a replica")
    # Why a replica node may not have been offered: kube-scheduler samples only above 100 nodes.
    assert ("percentageOfNodesToScore" in message) == (node_count > 100)
    client.scores(claims_pod("vol1"), ["n1", "n4"])
    assert len(client.reasons()) == 1


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_names_and_nodes_requests_score_alike_and_warn_alike(data):
    """NodeNames requests score from the node table's places, Nodes requests candidate by
    candidate: for any layout, node states, replicas, shared volumes and candidate order,
    the answers and the NonOptimumScheduling decision are the same."""
    names = [f"n{i}" for i in range(data.draw(st.integers(2, 8)))]
    racks = data.draw(st.lists(st.sampled_from(["1", "2", ""]), min_size=len(names), max_size=len(names)))
    zones = data.draw(st.lists(st.sampled_from(["a", "b", ""]), min_size=len(names), max_size=len(names)))
    states = data.draw(st.lists(st.sampled_from(["ok", "down", "offline"]), min_size=len(names), max_size=len(names)))
    volumes = {
        f"vol{v}": data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
        for v in range(data.draw(st.integers(1, 3)))
    }
    shared = {v: "rwx" for v in volumes if data.draw(st.booleans())}
    world = longhorn_world(
        {n: topology_labels(rack=r, zone=z) for n, r, z in zip(names, racks, zones, strict=True)},
        volumes,
        storage_down=[n for n, s in zip(names, states, strict=True) if s == "down"],
        offline=[n for n, s in zip(names, states, strict=True) if s == "offline"],
        access_modes=shared,
    )
    world.add(k8s_node("plain", labels=topology_labels(rack="1", zone="a")))  # no storage of the driver
    candidates = data.draw(st.permutations([*names, "plain"]))
    candidates = candidates[: data.draw(st.integers(1, len(candidates)))]
    by_names, by_nodes = ExtenderClient(world), ExtenderClient(world)
    the_pod = claims_pod(*volumes)
    assert by_names.scores(the_pod, candidates, "names") == by_nodes.scores(the_pod, candidates, "nodes")
    assert by_names.reasons() == by_nodes.reasons()


def test_a_node_not_cached_yet_scores_zero_and_the_others_as_usual():
    world = longhorn_world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]})
    assert ExtenderClient(world).scores(claims_pod("vol1"), ["n1", "new", "n3", "n5"]) == [100, 0, 50, 5]
