"""A controller started before stork's snapshot CRDs exist: the health monitor runs at once,
the group snapshot feature waits for its kinds (and says so), and starts in the same process
when the CRDs are applied. On a control plane of its own, without those CRDs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from localcluster import simulate
from localcluster.cluster import LocalCluster, six_nodes
from localcluster.snapshots import SimulatedSnapshotter, install_snapshot_crds, snapshot_class
from storkcore.drivers.longhorn import PROVISIONER as LONGHORN
from storkcore.snapshots import GROUP_SNAPSHOTS
from tests.e2e.helpers import bound_pod, longhorn_workload, replacement_pod, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = "partial"
CONTROLLER = "stork-controller-partial"


@pytest.fixture(scope="module")
def partial():
    local = LocalCluster.create()
    try:
        local.start(with_snapshot_crds=False)
        local.add_stork("longhorn")
        local.add_nodes(six_nodes())
        simulate.longhorn_class(local.kube())
        base = local.start_controller(
            CONTROLLER,
            "longhorn",
            ["--no-leader-elect", "--health-monitor-interval", "1", "--unsafe-short-intervals",
             "--offline-backoff", "3", "--batch-interval", "1"],
        )  # fmt: skip
        yield local, base
    finally:
        local.stop()


def readyz(base: str) -> dict:
    """The controller's /readyz answer, ready (200) or not (503: a cache still listing)."""
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        assert err.code == 503
        return json.loads(err.read())


def test_without_the_snapshot_crds_the_health_monitor_still_moves_pods(partial):
    local, base = partial
    kube = local.kube()
    features = readyz(base)["features"]  # ready: only kinds this cluster does not serve are missing
    assert features["health-monitor"] == "running"
    assert "groupvolumesnapshots.stork.libopenstorage.org: not served" in features["group-snapshots"]
    assert "volumesnapshotschedules.stork.libopenstorage.org: not served" in features["schedules"]
    local.ensure_namespace(NAMESPACE)
    longhorn_workload(kube, NAMESPACE, ["node-1", "node-3"], app="db")
    first = bound_pod(kube, NAMESPACE, "db")
    dead = first["spec"]["nodeName"]
    simulate.set_longhorn_node(kube, dead, ready=False)
    try:
        moved = replacement_pod(kube, NAMESPACE, "db", first)
    finally:
        simulate.set_longhorn_node(kube, dead, ready=True)
    assert moved["spec"]["nodeName"] != dead


def test_the_crds_applied_later_start_group_snapshots_in_the_same_process(partial):
    local, base = partial
    kube = local.kube()
    pid = local.control_plane.procs.running[CONTROLLER].pid
    install_snapshot_crds(kube)
    snapshot_class(kube, "longhorn-snapshots", LONGHORN)
    snapshotter = SimulatedSnapshotter(kube, local.control_plane.workdir / "partial-snapshots").start()
    try:
        wait_for(lambda: readyz(base)["features"]["group-snapshots"] == "running", 40, "group snapshots to start")
        kube.create(
            GROUP_SNAPSHOTS,
            NAMESPACE,
            {
                "apiVersion": "stork.libopenstorage.org/v1alpha1",
                "kind": "GroupVolumeSnapshot",
                "metadata": {"name": "later"},
                "spec": {"pvcNames": ["data"]},
            },
        )

        def finished():
            group = kube.get(GROUP_SNAPSHOTS, NAMESPACE, "later")
            return group if group.get("status", {}).get("status") in ("Successful", "Failed") else None

        group = wait_for(finished, 60, "the group snapshot to finish")
    finally:
        snapshotter.stop()
    assert group["status"]["status"] == "Successful", group["status"]
    assert local.control_plane.procs.running[CONTROLLER].pid == pid  # no restart
    # Each kind's reflector retries "not served" on its own 10 s clock, so schedules may follow a beat later.
    wait_for(lambda: readyz(base)["features"]["schedules"] == "running", 40, "schedules to start")
