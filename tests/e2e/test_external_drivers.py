"""End to end, for `pxd` and `linstor`, each with its SIMULATED storage API: the real
apiserver sends pods to stork through our webhook, the real scheduler places them on
replica nodes through our extender, the health monitor moves a pod off a node whose
storage the simulated system reports down, and a failing storage API never blocks
scheduling."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from localcluster import simulate
from localcluster.simulated_linstor import SimulatedLinstor, api_error
from localcluster.simulated_portworx import SimulatedPortworx
from storkcore.drivers.linstor import PROVISIONER as LINSTOR
from tests.e2e.helpers import (
    bound_pod,
    create_deployment,
    events_for,
    pods_of,
    unique,
    wait_bound_claim,
    wait_for,
)
from tests.e2e.test_health_monitor import FAST, metric

pytestmark = pytest.mark.e2e

NODES = [f"node-{i}" for i in range(6)]
IP_ONLY = "node-5"  # its storage node carries no name of it: matched by InternalIP (10.1.0.6) alone


@dataclass
class Storage:
    """One simulated storage system, seen through the words of the test."""

    driver: str
    server: Any
    ids: dict[str, str] = field(default_factory=dict)  # Kubernetes node -> storage node

    @property
    def scheduler(self) -> str:
        return f"stork-{self.driver}"

    @property
    def class_name(self) -> str:
        return f"e2e-{self.driver}"

    def driver_args(self) -> list[str]:
        refresh = ["--node-refresh-interval", "1", "--volume-refresh-interval", "1"]
        if self.driver == "pxd":
            return ["--px-endpoint", self.server.url, *refresh]
        return ["--linstor-controllers", self.server.url, *refresh]

    def add_nodes(self) -> None:
        for i, node in enumerate(NODES):
            ip = f"10.1.0.{i + 1}"
            if self.driver == "pxd":
                self.ids[node] = f"px-{i:04d}"
                named = node != IP_ONLY
                self.server.add_node(
                    self.ids[node], scheduler_name=node if named else "", hostname=node if named else "", ip=ip
                )
            else:
                self.ids[node] = node if node != IP_ONLY else "satellite-5"
                self.server.add_node(self.ids[node], ip=ip, k8s_hostname=node if node != IP_ONLY else "")

    def add_volume(self, volume: str, nodes: list[str]) -> None:
        if self.driver == "pxd":
            self.server.add_volume(volume, [self.ids[n] for n in nodes])
        else:
            for node in nodes:
                self.server.add_resource(volume, self.ids[node])
            self.server.add_resource(volume, "tiebreaker-node", kind="tiebreaker")

    def pv_source(self, volume: str) -> dict[str, Any]:
        if self.driver == "pxd":
            return {"portworxVolume": {"volumeID": volume, "fsType": "ext4"}}
        return {"csi": {"driver": LINSTOR, "volumeHandle": volume, "fsType": "ext4"}}

    def set_down(self, node: str, down: bool) -> None:
        if self.driver == "pxd":
            self.server.set_node_status(self.ids[node], "STATUS_OFFLINE" if down else "STATUS_OK")
        else:
            self.server.set_connection(self.ids[node], "OFFLINE" if down else "ONLINE")


@pytest.fixture(scope="module", params=["pxd", "linstor"])
def storage(request, cluster, kube) -> Iterator[Storage]:
    server = (SimulatedPortworx() if request.param == "pxd" else SimulatedLinstor()).start()
    chosen = Storage(request.param, server)
    chosen.add_nodes()
    provisioner = "pxd.portworx.com" if request.param == "pxd" else LINSTOR
    simulate.storage_class(kube, chosen.class_name, provisioner)
    cluster.add_stork(
        request.param,
        chosen.driver_args(),
        scheduler_name=chosen.scheduler,
        namespace_labels={"stork-e2e/driver": request.param},
    )
    try:
        yield chosen
    finally:
        server.stop()


@pytest.fixture
def namespace(cluster, storage) -> str:
    name = unique(f"e2e-{storage.driver}")
    cluster.ensure_namespace(name, {"stork-e2e/driver": storage.driver})
    return name


def workload(kube, storage: Storage, namespace: str, replicas_on: list[str]) -> str:
    volume, claim, app = unique("vol"), unique("data"), unique("app")
    storage.add_volume(volume, replicas_on)
    simulate.bound_claim(kube, namespace, claim, storage.class_name, storage.pv_source(volume))
    wait_bound_claim(kube, namespace, claim)
    create_deployment(kube, namespace, app, [claim])
    return app


def last_refresh(metrics: str, driver: str) -> float:
    found = re.search(
        rf'^stork_storage_last_refresh_timestamp_seconds\{{driver="{driver}",kind="nodes"\}} ([0-9.e+]+)$',
        metrics,
        re.M,
    )
    return float(found.group(1)) if found else 0.0


def test_pod_goes_to_stork_and_lands_on_a_replica_node(kube, storage, namespace):
    app = workload(kube, storage, namespace, ["node-1", "node-4"])
    pod = bound_pod(kube, namespace, app)
    assert pod["spec"]["schedulerName"] == storage.scheduler  # our webhook, through the real apiserver
    assert pod["spec"]["nodeName"] in ("node-1", "node-4")  # the real scheduler, through our extender


def test_a_storage_node_known_only_by_its_ip_holds_the_pod(kube, storage, namespace):
    app = workload(kube, storage, namespace, [IP_ONLY])
    assert bound_pod(kube, namespace, app)["spec"]["nodeName"] == IP_ONLY


def test_pod_moves_off_a_node_whose_storage_went_down(kube, cluster, storage, namespace):
    name = f"controller-{storage.driver}"
    lease = ["--lease-name", f"{storage.scheduler}-controller"]  # its own lease: a test-only instance
    base = cluster.start_controller(name, storage.driver, [*FAST, *lease, *storage.driver_args()])
    try:
        app = workload(kube, storage, namespace, ["node-0", "node-2"])
        first = bound_pod(kube, namespace, app)
        dead = first["spec"]["nodeName"]
        other = {"node-0": "node-2", "node-2": "node-0"}[dead]
        wait_for(lambda: metric(base, "stork_controller_leader") == 1, 30, "the controller to lead")
        storage.set_down(dead, True)
        try:
            replacement = wait_for(
                lambda: next(
                    (
                        p
                        for p in pods_of(kube, namespace, app)
                        if p["metadata"]["uid"] != first["metadata"]["uid"] and p["spec"].get("nodeName")
                    ),
                    None,
                ),
                60,
                "the replacement pod to be bound",
            )
        finally:
            storage.set_down(dead, False)
        assert replacement["spec"]["nodeName"] == other
        assert replacement["spec"]["schedulerName"] == storage.scheduler
        assert any(
            e["reason"] == "StorageDriverOffline" for e in events_for(kube, namespace, first["metadata"]["name"])
        )
        assert metric(base, "stork_pods_rescheduled_total") >= 1
    finally:
        cluster.stop_process(name)


def test_failing_storage_api_never_blocks_scheduling(kube, cluster, storage, namespace):
    stork = next(s for s in cluster.storks if s.scheduler_name == storage.scheduler)
    storage.server.server.failure = lambda: api_error(503, "simulated outage")
    try:
        app = workload(kube, storage, namespace, ["node-3"])  # a volume the extender has never seen
        pod = bound_pod(kube, namespace, app, timeout=60)  # placed anyway: the extender fails open
        assert pod["spec"]["schedulerName"] == storage.scheduler
        fail_open = wait_for(
            lambda: [e for e in events_for(kube, namespace, pod["metadata"]["name"]) if "503" in e.get("message", "")],
            30,
            "an event that says the storage API failed",
        )
        assert fail_open
    finally:
        storage.server.server.failure = None
    back = time.time()
    text = stork.metrics()
    assert re.search(r'^stork_extender_fail_open_total\{verb="filter"\} [1-9]', text, re.M)
    assert not re.search(r'^stork_extender_requests_total\{code="5', text, re.M)  # never a scheduler error
    # Requests stop waiting on a failing API until the background thread hears from it again.
    wait_for(lambda: last_refresh(stork.metrics(), storage.driver) > back, 30, "the storage API to answer again")
    second = workload(kube, storage, namespace, ["node-3"])
    assert bound_pod(kube, namespace, second)["spec"]["nodeName"] == "node-3"  # answers again once it is back
