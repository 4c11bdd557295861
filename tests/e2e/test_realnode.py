"""End to end on a real node (containerd + kubelet): a Deployment on a local volume is admitted
by our webhook, placed by the real scheduler through our extender, runs, writes into its
volume; deleting it really stops it; stopping the node leaves nothing behind."""

from __future__ import annotations

import re
import subprocess

import pytest

from localcluster import simulate
from localcluster.realnode import NODE_NAME, leftovers, local_volume_claim, run_on_real_node
from tests.e2e.conftest import CSI_NAMESPACE_LABELS
from tests.e2e.helpers import PODS, pods_of, unique, wait_for
from tests.manifests.rendering import kubectl

pytestmark = pytest.mark.realnode


def test_pod_on_a_local_volume_runs_on_the_real_node(kube, cluster, real_node, stork_csi):
    namespace = unique("real")
    cluster.ensure_namespace(namespace, CSI_NAMESPACE_LABELS)
    volume = real_node.folder / "volumes" / namespace
    local_volume_claim(kube, namespace, "data", volume)
    run_on_real_node(kube, namespace, "notes", "data", "echo written-by-$HOSTNAME > /data/hello && exec sleep 3600")
    pod = wait_for(
        lambda: next(
            (p for p in pods_of(kube, namespace, "notes") if p.get("status", {}).get("phase") == "Running"), None
        ),
        120,
        "the pod to run",
    )
    assert pod["spec"]["schedulerName"] == "stork-csi"  # our webhook
    assert pod["spec"]["nodeName"] == NODE_NAME  # the real scheduler, through our extender
    # The extender watches Running pods only (a field selector); this one counts as local to its data.
    wait_for(
        lambda: re.search(r"^stork_hyperconverged_pods_total [1-9]", stork_csi.metrics(), re.M),
        30,
        "the running pod in the placement gauge",
    )
    name = pod["metadata"]["name"]
    read = wait_for(
        lambda: subprocess.run(
            [
                kubectl(),
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-n",
                namespace,
                "exec",
                name,
                "--",
                "cat",
                "/data/hello",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip(),
        30,
        "the file through exec",
    )
    assert read.startswith("written-by-")
    assert (volume / "hello").read_text().strip() == read  # really in the local volume on this machine
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    kube.delete(simulate.DEPLOYMENTS, namespace, "notes", {"propagationPolicy": "Foreground"})
    wait_for(lambda: not pods_of(kube, namespace, "notes") and not kube.get(PODS, namespace, name), 90, "the pod to go")
    wait_for(lambda: not _running(real_node, container), 60, "the container to stop")  # really stopped


def _running(real_node, container: str) -> bool:
    """Whether containerd still runs the container's process (`ctr tasks ls`: TASK PID STATUS)."""
    listing = subprocess.run(
        ["ctr", "--address", str(real_node.socket), "-n", "k8s.io", "tasks", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return any(line.split()[0] == container and line.split()[-1] == "RUNNING" for line in listing.splitlines()[1:])


def test_stopping_the_real_node_leaves_nothing_behind(real_node):
    real_node.stop()
    assert leftovers(real_node.folder) == []
