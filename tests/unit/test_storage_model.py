"""The storage model: node matching, selectors, provisioners, drivers (SPEC §2)."""

from __future__ import annotations

import pytest

from storkcore import claims
from storkcore.drivers import DriverOptions, make_driver
from storkcore.drivers.base import Driver
from storkcore.matching import NodeIndex
from storkcore.model import NodeStatus, StorageNode
from storkcore.selectors import node_matches_selector
from tests.builders import (
    _NO_CLASS,
    World,
    csinode,
    k8s_node,
    lh_node,
    lh_replica,
    lh_volume,
    longhorn_world,
    pod,
    pv,
    pvc,
    storage_class,
)


def storage(storage_id: str, scheduler_id: str = "", hostname: str = "", ips=()) -> StorageNode:
    return StorageNode(storage_id, scheduler_id, hostname, NodeStatus.ONLINE, tuple(ips))


@pytest.mark.parametrize(
    ("driver_node", "k8s", "matches"),
    [
        (storage("x", scheduler_id="node1"), k8s_node("node1"), True),
        (storage("node1"), k8s_node("node1"), True),
        (storage("node1"), k8s_node("node1.example.com"), True),  # storage name is the short form
        (storage("node1.example.com"), k8s_node("node1"), True),  # Kubernetes name is the short form
        (storage("x", hostname="node1.lab"), k8s_node("n", hostnames=["node1"]), True),  # Hostname address
        (storage("node1"), k8s_node("node10"), False),  # a prefix without a dot is not a short form
        (storage("x", ips=["10.0.0.5"]), k8s_node("n", internal_ips=["10.0.0.5"]), True),
        (storage("x", ips=["10.0.0.5"]), k8s_node("n", external_ips=["10.0.0.5"]), False),  # never ExternalIP
        (storage("x"), k8s_node("y"), False),
    ],
)
def test_node_matching(driver_node, k8s, matches):
    found = NodeIndex([driver_node]).match(k8s)
    assert (found is driver_node) is matches


def expr(key, operator, *values):
    return {"nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}]}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (expr("disk", "In", "ssd", "nvme"), True),
        (expr("disk", "In", "hdd"), False),
        (expr("disk", "NotIn", "hdd"), True),
        (expr("missing", "NotIn", "x"), True),
        (expr("disk", "Exists"), True),
        (expr("disk", "DoesNotExist"), False),
        (expr("cores", "Gt", "8"), True),
        (expr("cores", "Lt", "8"), False),
        (expr("disk", "Gt", "8"), False),  # not a number
        ({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]}, True),
        ({"nodeSelectorTerms": [expr("disk", "In", "hdd")["nodeSelectorTerms"][0], {"matchExpressions": []}]}, False),
        (
            {
                "nodeSelectorTerms": [
                    expr("disk", "In", "hdd")["nodeSelectorTerms"][0],
                    expr("cores", "Gt", "1")["nodeSelectorTerms"][0],
                ]
            },
            True,  # terms are ORed
        ),
        ({"nodeSelectorTerms": []}, False),
    ],
)
def test_node_selector_operators(selector, matches):
    node = k8s_node("n", labels={"disk": "ssd", "cores": "16"})
    assert node_matches_selector(node, selector) is matches


def test_provisioner_resolution_order():
    world = World("longhorn")
    world.add(storage_class("lh", "driver.longhorn.io"), storage_class("other", "other.io", default=True))
    world.add(
        pv("bound-pv", csi_driver="from-pv.io"),
        pv("legacy-pv", csi_driver=None, annotations={"pv.kubernetes.io/provisioned-by": "legacy.io"}),
    )
    cluster = world.cluster
    annotated = pvc(
        "a",
        storage_class_name="lh",
        annotations={
            "volume.kubernetes.io/storage-provisioner": "ann.io",
            "volume.beta.kubernetes.io/storage-provisioner": "beta.io",
        },
    )
    assert claims.provisioner_of(cluster, annotated) == "ann.io"
    beta = pvc("b", storage_class_name="lh", annotations={"volume.beta.kubernetes.io/storage-provisioner": "beta.io"})
    assert claims.provisioner_of(cluster, beta) == "beta.io"
    assert claims.provisioner_of(cluster, pvc("c", storage_class_name="lh")) == "driver.longhorn.io"
    assert claims.provisioner_of(cluster, pvc("d", storage_class_name=_NO_CLASS)) == "other.io"  # the default class
    assert claims.provisioner_of(cluster, pvc("e", storage_class_name="", volume="bound-pv")) == "from-pv.io"
    assert claims.provisioner_of(cluster, pvc("f", storage_class_name="", volume="legacy-pv")) == "legacy.io"
    assert claims.provisioner_of(cluster, pvc("g", storage_class_name="")) == ""  # "" means no class


def test_longhorn_node_status_from_conditions():
    world = longhorn_world({"up": {}, "down": {}, "nodisk": {}, "pressure": {}}, {})
    world.add(
        lh_node("down", ready=False), lh_node("nodisk", disk_ready=False), lh_node("pressure", disk_schedulable=False)
    )
    status = {n.storage_id: n.status for n in world.driver.nodes()}
    assert status == {
        "up": NodeStatus.ONLINE,
        "down": NodeStatus.OFFLINE,
        "nodisk": NodeStatus.STORAGE_DOWN,
        "pressure": NodeStatus.STORAGE_DOWN,
    }
    node = world.driver.node("down")
    assert node is not None and node.status == NodeStatus.OFFLINE and node.ips == ("10.0.0.2",)


def test_longhorn_volume_uses_only_healthy_replicas_and_follows_updates():
    world = longhorn_world({"n1": {}, "n2": {}, "n3": {}}, {"vol": ["n1", "n2"]})
    world.add(lh_replica("vol-new", "vol", "n3", healthy=False), lh_replica("vol-r1", "vol", "n2", failed=True))
    claim = world.cluster.pvc("default", "pvc-vol")
    assert world.driver.volume(claim).data_nodes == ("n1",)
    world.add(lh_replica("vol-new", "vol", "n3"))  # rebuilt
    assert world.driver.volume(claim).data_nodes == ("n1", "n3")


def test_longhorn_rwx_needs_anti_hyperconvergence_but_migratable_does_not():
    world = longhorn_world({"n1": {}}, {"share": ["n1"], "vm": ["n1"], "plain": ["n1"]}, access_modes={"share": "rwx"})
    world.add(lh_volume("vm", access_mode="rwx", migratable=True))
    vol = {name: world.driver.volume(world.cluster.pvc("default", f"pvc-{name}")) for name in ("share", "vm", "plain")}
    assert vol["share"].needs_anti_hyperconvergence
    assert not vol["vm"].needs_anti_hyperconvergence and not vol["plain"].needs_anti_hyperconvergence


def test_longhorn_volume_labels_merge_class_parameters_and_claim_annotations():
    world = longhorn_world({"n1": {}}, {"vol": ["n1"]}, class_params={"numberOfReplicas": "3", "k": "class"})
    claim = world.cluster.pvc("default", "pvc-vol")
    claim["metadata"]["annotations"] = {"k": "claim"}
    labels = world.driver.volume(claim).labels
    assert labels["numberOfReplicas"] == "3" and labels["k"] == "claim"


def test_csi_driver_nodes_need_ready_and_registered_driver():
    world = World("csi", csi_names=("csi.example.com",))
    world.add(k8s_node("ok"), csinode("ok", ["csi.example.com"]))
    world.add(k8s_node("other"), csinode("other", ["other.io"]))
    world.add(k8s_node("down", ready=False), csinode("down", ["csi.example.com"]))
    status = {n.storage_id: n.status for n in world.driver.nodes()}
    assert status == {"ok": NodeStatus.ONLINE, "other": NodeStatus.OFFLINE, "down": NodeStatus.OFFLINE}


def test_csi_local_volumes_need_only_node_readiness():
    world = World("csi", csi_names=("kubernetes.io/no-provisioner",))
    world.add(storage_class("local", "kubernetes.io/no-provisioner", wait_for_consumer=True))
    world.add(k8s_node("n1"), k8s_node("n2"), k8s_node("n3", ready=False))
    world.add(
        pv(
            "local-pv",
            csi_driver=None,
            local_path="/mnt/disk",
            node_affinity={
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}
                ]
            },
        )
    )
    claim = pvc("data", storage_class_name="local", volume="local-pv")
    world.add(claim)
    assert world.driver.owns(claim)
    assert world.driver.volume(claim).data_nodes == ("n2",)
    assert {n.storage_id: n.status for n in world.driver.nodes()}["n3"] == NodeStatus.OFFLINE


def test_driver_selection_by_name_and_entry_points(monkeypatch):
    world = World("longhorn")
    with pytest.raises(ValueError, match="unknown driver 'ceph'; known: csi, linstor, longhorn, pxd"):
        make_driver("ceph", world.cluster, DriverOptions())
    with pytest.raises(ValueError, match="csi-driver-name"):
        make_driver("csi", world.cluster, DriverOptions())

    class ThirdParty(Driver):
        name = "third"
        provisioners = frozenset({"third.io"})

        def volume(self, pvc):
            return None

        def _node_sources(self):
            return ()

        def _source_names(self):
            return []

        def _derive_node(self, source_name):
            return None

        def _fresh_node(self, storage_id):
            return None

    class EntryPoint:
        name = "third"

        def load(self):
            return ThirdParty

    import storkcore.drivers as registry

    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()] if group == "stork_py.drivers" else [])
    driver = make_driver("third", world.cluster, DriverOptions())
    assert isinstance(driver, ThirdParty)
    assert driver.owns(
        pvc("x", storage_class_name="", annotations={"volume.kubernetes.io/storage-provisioner": "third.io"})
    )


def test_ephemeral_volume_claims_are_named_after_pod_and_volume():
    from storkcore.pods import claim_names

    assert claim_names(pod("web-0", ["data"], ephemeral={"scratch": "longhorn"})) == ["data", "web-0-scratch"]
