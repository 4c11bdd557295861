"""The README's first command: the playground shows placement, then leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from localcluster.realnode import leftovers
from tests.processes import console_script

pytestmark = pytest.mark.e2e


def test_playground_shows_pods_next_to_their_data_and_cleans_up(tmp_path):
    env_state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    run = subprocess.run(
        [console_script("stork-playground"), "up", "--once"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env_state},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    demo = ("postgres-", "redis-", "files-", "web-")
    lines = {line.split("-")[0]: line for line in run.stdout.splitlines() if line.startswith(demo)}
    assert set(lines) == {"postgres", "redis", "files", "web"}
    assert "local replica" in lines["postgres"] and " stork " in lines["postgres"]
    assert "local replica" in lines["redis"]
    assert "kept off replica nodes" in lines["files"]
    files_node = lines["files"].split()[2]
    assert files_node not in ("node-1", "node-3")  # its replica nodes
    assert "default-scheduler" in lines["web"]
    assert "export KUBECONFIG=" in run.stdout
    # Clean-up says what it is stopping, step by step.
    assert "stopping the control plane: controllers, schedulers, kube-apiserver, etcd ..." in run.stdout
    assert "stopping the real node: its pods, the kubelet, containerd, mounts ..." in run.stdout
    assert "is Running on localhost (scheduler stork-local)" in run.stdout  # the real node's pod
    snapshot = "GroupVolumeSnapshot demo-local/ledger-snapshot of the ledger (rules quiesce/record)"
    assert f"{snapshot}: stage Final, status Successful" in run.stdout
    assert "the two copies are consistent" in run.stdout
    assert re.search(r"^  ledger +demo-frequent +false +ledger-interval-", run.stdout, re.M)  # storkctl get schedules
    assert re.search(r"^  NODE +VERDICT +SCORE +WHY$", run.stdout, re.M)  # storkctl explain's table
    assert re.search(r"^  node-0 +kept +100 +demo/postgres-data: replica 100$", run.stdout, re.M)
    # Every process ran with its files under the state folder: none may be left.
    processes = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert processes == ""
    assert not (tmp_path / "state" / "stork-py" / "playground").exists()
    assert leftovers(tmp_path) == []  # no containerd, kubelet, container, mount or pod cgroup of ours
