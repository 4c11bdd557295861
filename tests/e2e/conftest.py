"""One real local cluster for the end-to-end tests: control plane, default scheduler,
stork for Longhorn (scheduler `stork`) and stork for local volumes (scheduler
`stork-csi`, in namespaces labelled `stork-e2e/driver=csi`), and six simulated
nodes in two zones and three racks, each with a Longhorn node."""

from __future__ import annotations

import pytest

from localcluster import simulate
from localcluster.cluster import LocalCluster, six_nodes
from tests.e2e.helpers import LOCAL_DRIVER_ARGS

CSI_NAMESPACE_LABELS = {"stork-e2e/driver": "csi"}


@pytest.fixture(scope="session")
def cluster():
    local = LocalCluster.create()
    try:
        local.start()
        local.add_stork("longhorn")
        local.add_stork(
            "csi",
            LOCAL_DRIVER_ARGS,
            scheduler_name="stork-csi",
            namespace_labels=CSI_NAMESPACE_LABELS,
        )
        local.add_nodes(six_nodes())
        simulate.longhorn_class(local.kube())
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kube(cluster):
    return cluster.kube()


@pytest.fixture(scope="session")
def longhorn(cluster):
    return cluster.storks[0]


@pytest.fixture(scope="session")
def stork_csi(cluster):
    return cluster.storks[1]


@pytest.fixture(scope="session")
def real_node(cluster):
    """The real node (containerd + kubelet), shared by every realnode test; the last test of
    tests/e2e/test_realnode.py stops it and checks that nothing is left."""
    node = cluster.real_node or cluster.add_real_node({"topology.kubernetes.io/zone": "zone-a"})
    yield node
    node.stop()
