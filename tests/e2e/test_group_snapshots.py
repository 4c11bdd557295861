"""Application-consistent group snapshots on the real node, with the real apiserver's exec.

An application writes numbered transactions that span two local volumes ("begin N" in /a,
then "end N" in /b). A pre-rule pauses it between transactions and holds it with
${WAIT_CMD}; `stork-controller` creates a VolumeSnapshot per volume, and the simulated CSI
snapshotter copies each volume's folder when it cuts, one volume after the other (0.3 s
apart, as drivers cut volumes in turn). The copies are consistent when every transaction is
in both or in neither.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from localcluster.ledger import QUIESCE, consistent, create_rule, ledger_rules, run_ledger, transactions
from localcluster.realnode import NODE_NAME, local_volume_claim, run_app_on_real_node
from localcluster.snapshots import (
    SIMULATED_LOCAL_DRIVER,
    SimulatedSnapshotter,
    interval_policy,
    snapshot_class,
    snapshot_schedule,
)
from storkcore.kube import PVCS
from storkcore.snapshots import GROUP_LABEL, GROUP_SNAPSHOTS, SNAPSHOT_SCHEDULES, VOLUME_SNAPSHOTS
from storkctl.restore import RESTORED_FROM
from tests.e2e.conftest import CSI_NAMESPACE_LABELS
from tests.e2e.helpers import pods_of, wait_for
from tests.manifests.rendering import kubectl
from tests.processes import console_script
from tests.upstream_objects import upstream_object

pytestmark = pytest.mark.realnode

NAMESPACE = "snapshots"
HOLD_LIMIT = 20
CUT_TIMEOUT = 6
CONTROLLER = "stork-controller-snapshots"
CONTROLLER_ARGS = [
    "--csi-driver-name",
    "kubernetes.io/no-provisioner",
    "--no-leader-elect",
    "--rule-action-timeout",
    "15",
    "--rule-hold-timeout",
    str(HOLD_LIMIT),
    "--snapshot-cut-timeout",
    str(CUT_TIMEOUT),
    "--snapshot-prechecks-timeout",
    "30",
    "--snapshot-ready-timeout",
    "30",
    "--unsafe-interval-minute-seconds",
    str(4),  # an interval policy's "minute" lasts 4 s here
]


@pytest.fixture(scope="module")
def app(cluster, kube, real_node, stork_csi):
    cluster.ensure_namespace(NAMESPACE, CSI_NAMESPACE_LABELS)
    for claim in ("a", "b"):
        local_volume_claim(kube, NAMESPACE, claim, real_node.folder / "volumes" / f"{NAMESPACE}-{claim}")
        kube.patch(PVCS, NAMESPACE, claim, {"metadata": {"labels": {"app": "ledger"}}})
    run_ledger(kube, NAMESPACE)
    pod = wait_for(lambda: _running_pod(kube), 120, "the ledger to run")
    assert pod["spec"]["nodeName"] == NODE_NAME
    ledger_rules(kube, NAMESPACE)
    create_rule(
        kube,
        NAMESPACE,
        "quiesce-then-fail",
        {
            "podSelector": {"app": "ledger"},
            "actions": [
                {"type": "command", "value": QUIESCE, "background": True},
                {"type": "command", "value": "echo cannot flush >&2; exit 3"},
            ],
        },
    )
    snapshot_class(kube, "local-snapshots", SIMULATED_LOCAL_DRIVER)
    snapshotter = SimulatedSnapshotter(
        kube, cluster.control_plane.workdir / "snapshots", ready_delay=1.0, cut_spacing=0.3
    )
    snapshotter.start()
    cluster.start_controller(CONTROLLER, "csi", CONTROLLER_ARGS)
    yield snapshotter
    if CONTROLLER in cluster.control_plane.procs.running:
        cluster.stop_process(CONTROLLER)
    snapshotter.stop()


def _running_pod(kube, app_name: str = "ledger", namespace: str = NAMESPACE):
    return next((p for p in pods_of(kube, namespace, app_name) if p["status"].get("phase") == "Running"), None)


def group_snapshot(kube, name, **spec):
    body = {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "GroupVolumeSnapshot",
        "metadata": {"name": name},
        "spec": {"pvcSelector": {"matchLabels": {"app": "ledger"}}, **spec},
    }
    kube.create(GROUP_SNAPSHOTS, NAMESPACE, body)


def finished(kube, name, timeout=90):
    def done():
        found = kube.get(GROUP_SNAPSHOTS, NAMESPACE, name)
        return found if found.get("status", {}).get("status") in ("Successful", "Failed") else None

    return wait_for(done, timeout, f"group snapshot {name} to finish")


def in_pod(cluster, kube, command: str, app_name: str = "ledger", namespace: str = NAMESPACE) -> str:
    pod = _running_pod(kube, app_name, namespace)
    out = subprocess.run(
        [
            kubectl(),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            namespace,
            "exec",
            pod["metadata"]["name"],
            "--",
            "sh",
            "-c",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout


def copies_consistent(snapshotter, group) -> bool:
    """Every transaction begun in the copy of /a has ended in the copy of /b, and no more."""
    handles = {
        e["parentVolumeID"]: snapshotter.handle_of(NAMESPACE, e["volumeSnapshotName"])
        for e in group["status"]["volumeSnapshots"]
    }
    assert transactions(handles["a"])[0], "the application wrote nothing before the snapshot"
    return consistent(handles["a"], handles["b"])


def app_paused(cluster, kube) -> bool:
    return in_pod(cluster, kube, "[ -e /tmp/pause ] && echo yes || echo no").strip() == "yes"


def pauses(cluster, kube) -> list[float]:
    lines = in_pod(cluster, kube, "cat /tmp/pauselog").split()
    starts = [float(v) for k, v in zip(lines[::2], lines[1::2], strict=True) if k == "start"]
    ends = [float(v) for k, v in zip(lines[::2], lines[1::2], strict=True) if k == "end"]
    return [end - start for start, end in zip(starts, ends, strict=False)]


def test_group_snapshots_under_a_rule_are_consistent_across_volumes(cluster, kube, app):
    for attempt in range(3):
        name = f"ledger-{attempt}"
        group_snapshot(kube, name, preExecRule="quiesce", postExecRule="record")
        group = finished(kube, name)
        assert group["status"]["status"] == "Successful", group["status"]
        assert copies_consistent(app, group), f"attempt {attempt}: the copies disagree"
        cuts = [app.cuts[f"{NAMESPACE}/{e['volumeSnapshotName']}"] for e in group["status"]["volumeSnapshots"]]
        post = in_pod(cluster, kube, "tail -n 1 /tmp/postlog").split()
        assert post[0] == "post" and post[2] == "free"  # the post-rule ran once the lock was gone
        assert int(post[1]) >= int(max(cuts))  # and after both cuts
        paused = pauses(cluster, kube)[-1]
        print(f"attempt {attempt}: application paused {paused:.2f} s; first to last cut {max(cuts) - min(cuts):.2f} s")
        assert paused <= (max(cuts) - min(cuts)) + 5, f"paused {paused:.1f}s for a cut of {max(cuts) - min(cuts):.1f}s"
    reasons = [
        e["reason"]
        for e in kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events")["items"]
        if e["involvedObject"].get("name") == "ledger-0"
    ]
    assert {"PreSnapshotRule", "SnapshotsCut", "PostSnapshotRule", "Successful"} <= set(reasons)


def test_without_a_rule_the_copies_can_disagree(cluster, kube, app):
    """Why rules exist: cut one after the other, two volumes of a busy application disagree."""
    results = []
    for attempt in range(3):
        name = f"unheld-{attempt}"
        group_snapshot(kube, name)
        group = finished(kube, name)
        assert group["status"]["status"] == "Successful"
        results.append(copies_consistent(app, group))
    print(f"without a rule, consistent copies: {results}")
    assert not all(results), "three unheld snapshots 0.3 s apart all agreed: the application is not writing"


def test_a_failing_pre_rule_fails_the_group_and_releases_the_application(cluster, kube, app):
    group_snapshot(kube, "fails", preExecRule="quiesce-then-fail", postExecRule="record")
    group = finished(kube, "fails")
    assert group["status"]["status"] == "Failed"
    assert "exit 3" in group["status"]["reason"] and "cannot flush" in group["status"]["reason"]
    assert not app_paused(cluster, kube)
    assert not _snapshots_of(kube, "fails")


def test_an_uncut_snapshot_releases_the_lock_at_its_deadline_and_retries_are_honoured(cluster, kube, app):
    app.stall = True
    try:
        group_snapshot(kube, "stalled", preExecRule="quiesce", postExecRule="record", maxRetries=1)
        group = finished(kube, "stalled", timeout=120)
    finally:
        app.stall = False
    status = group["status"]
    assert (status["status"], status["numRetries"]) == ("Failed", 1)
    assert f"not cut within {CUT_TIMEOUT}s" in status["reason"]
    assert not app_paused(cluster, kube)
    assert in_pod(cluster, kube, "tail -n 1 /tmp/postlog").split()[2] == "free"
    assert not _snapshots_of(kube, "stalled")


def test_a_killed_controller_never_leaves_the_application_frozen(cluster, kube, app):
    app.stall = True
    group_snapshot(kube, "orphaned", preExecRule="quiesce", postExecRule="record", maxRetries=1)

    def holding():
        status = kube.get(GROUP_SNAPSHOTS, NAMESPACE, "orphaned").get("status", {})
        return status.get("stage") == "Snapshot" and status.get("ruleTasks")

    wait_for(holding, 60, "the lock to be held")
    assert app_paused(cluster, kube)
    cluster.kill_process(CONTROLLER)
    killed = time.monotonic()
    wait_for(lambda: not app_paused(cluster, kube), HOLD_LIMIT + 15, "the application to resume by itself")
    assert time.monotonic() - killed <= HOLD_LIMIT + 5
    app.stall = False
    cluster.start_controller(CONTROLLER, "csi", CONTROLLER_ARGS)
    group = finished(kube, "orphaned")
    assert (group["status"]["status"], group["status"]["numRetries"]) == ("Successful", 1)
    messages = [
        e["message"]
        for e in kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events")["items"]
        if e["involvedObject"].get("name") == "orphaned"
    ]
    assert any("restarted during Snapshot" in m for m in messages)
    assert copies_consistent(app, group)


def storkctl(cluster, *args: str) -> subprocess.CompletedProcess:
    argv = [console_script("storkctl"), "--kubeconfig", str(cluster.kubeconfig), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_storkctl_restore_gives_claims_that_bind_and_hold_the_snapshotted_data(cluster, kube, app):
    group = kube.get(GROUP_SNAPSHOTS, NAMESPACE, "ledger-0")
    out = storkctl(cluster, "restore", "ledger-0", "-n", NAMESPACE, "--suffix", "restored")
    assert out.returncode == 0, out.stderr
    assert "persistentvolumeclaim/a-restored created from volumesnapshot/ledger-0-a-0" in out.stdout
    for claim in ("a-restored", "b-restored"):
        wait_for(lambda c=claim: kube.get(PVCS, NAMESPACE, c)["status"].get("phase") == "Bound", 60, f"{claim} to bind")
    run_app_on_real_node(kube, NAMESPACE, "reader", {"a-restored": "/a", "b-restored": "/b"}, "exec sleep 3600")
    wait_for(lambda: _running_pod(kube, "reader"), 120, "the reader to run")
    read = in_pod(cluster, kube, "cat /a/log", app_name="reader")
    handle = app.handle_of(NAMESPACE, group["status"]["volumeSnapshots"][0]["volumeSnapshotName"])
    assert read and read == (Path(handle) / "log").read_text()  # the restored claim holds the snapshot's data
    again = storkctl(cluster, "restore", "ledger-0", "-n", NAMESPACE, "--suffix", "restored")
    assert again.returncode == 1 and "already exists (use --suffix)" in again.stderr
    failed = storkctl(cluster, "restore", "fails", "-n", NAMESPACE)
    assert failed.returncode == 1 and "is Failed, not Successful" in failed.stderr


def test_storkctl_restores_into_a_namespace_the_group_lists_and_only_there(cluster, kube, app):
    target = "snapshots-copy"
    cluster.ensure_namespace(target, CSI_NAMESPACE_LABELS)
    refused = storkctl(cluster, "restore", "ledger-0", "-n", NAMESPACE, "--to-namespace", target)
    assert refused.returncode == 1
    assert f"may not be restored into namespace {target}: its spec.restoreNamespaces lists none" in refused.stderr
    kube.patch(GROUP_SNAPSHOTS, NAMESPACE, "ledger-0", {"spec": {"restoreNamespaces": [target]}})
    out = storkctl(cluster, "restore", "ledger-0", "-n", NAMESPACE, "--to-namespace", target)
    assert out.returncode == 0, out.stderr
    for claim in ("a", "b"):
        wait_for(lambda c=claim: kube.get(PVCS, target, c)["status"].get("phase") == "Bound", 60, f"{target}/{claim}")
    run_app_on_real_node(kube, target, "reader", {"a": "/a", "b": "/b"}, "exec sleep 3600")
    wait_for(lambda: _running_pod(kube, "reader", target), 120, "the reader in the other namespace to run")
    group = kube.get(GROUP_SNAPSHOTS, NAMESPACE, "ledger-0")
    for entry in group["status"]["volumeSnapshots"]:
        mount = "/" + entry["parentVolumeID"]
        read = in_pod(cluster, kube, f"cat {mount}/log", app_name="reader", namespace=target)
        handle = app.handle_of(NAMESPACE, entry["volumeSnapshotName"])
        assert read and read == (Path(handle) / "log").read_text()  # the snapshot's data, in the other namespace
    # The copies never own the data: deleting them leaves the source snapshots whole.
    for entry in group["status"]["volumeSnapshots"]:
        kube.delete(VOLUME_SNAPSHOTS, target, entry["volumeSnapshotName"])
    time.sleep(1)  # a few passes of the simulated snapshot controller
    for entry in group["status"]["volumeSnapshots"]:
        assert Path(app.handle_of(NAMESPACE, entry["volumeSnapshotName"])).is_dir()


def test_a_group_snapshot_upstream_wrote_with_empty_rule_names_is_taken_without_a_rule(cluster, kube, app):
    paused_before = len(pauses(cluster, kube))
    ledger_only = {  # not the restored copies, which carry the ledger's labels too
        "matchLabels": {"app": "ledger"},
        "matchExpressions": [{"key": RESTORED_FROM, "operator": "DoesNotExist"}],
    }
    body = upstream_object("GroupVolumeSnapshot", "upstream", NAMESPACE, pvcSelector=ledger_only)
    assert body["spec"]["preExecRule"] == "" and body["spec"]["postExecRule"] == ""
    kube.create(GROUP_SNAPSHOTS, NAMESPACE, body)
    group = finished(kube, "upstream")
    assert group["status"]["status"] == "Successful", group["status"]
    assert sorted(e["parentVolumeID"] for e in group["status"]["volumeSnapshots"]) == ["a", "b"]
    assert len(pauses(cluster, kube)) == paused_before  # "" is no rule: the application was never held


def test_a_csi_snapshot_with_upstream_rule_annotations_is_admitted_with_a_warning(cluster, kube, app):
    manifest = f"""apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata:
  name: annotated
  namespace: {NAMESPACE}
  annotations:
    stork.libopenstorage.org/pre-snapshot-rule: quiesce
spec:
  volumeSnapshotClassName: local-snapshots
  source: {{persistentVolumeClaimName: a}}
"""
    out = subprocess.run(
        [kubectl(), "--kubeconfig", str(cluster.kubeconfig), "create", "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "CSI cuts this snapshot at once" in out.stderr and "GroupVolumeSnapshot" in out.stderr


def _snapshots_of(kube, group: str):
    path = VOLUME_SNAPSHOTS.object_path(NAMESPACE, "").rstrip("/")
    return kube.request("GET", path, {"labelSelector": f"{GROUP_LABEL}={group}"})["items"]


def test_deleting_a_group_snapshot_deletes_its_volume_snapshots(kube, app):
    owned = _snapshots_of(kube, "ledger-1")
    copies = [Path(app.handle_of(NAMESPACE, s["metadata"]["name"])) for s in owned]
    assert len(owned) == 2 and all(c.is_dir() for c in copies)
    kube.delete(GROUP_SNAPSHOTS, NAMESPACE, "ledger-1", {"propagationPolicy": "Foreground"})
    wait_for(lambda: not _snapshots_of(kube, "ledger-1"), 60, "the garbage collector to delete them")
    wait_for(lambda: not any(c.exists() for c in copies), 30, "the simulated driver to drop the copies")


def schedule(kube, name: str, policy: str, **spec) -> None:
    snapshot_schedule(kube, NAMESPACE, name, policy, {"app": "ledger"}, **spec)


def groups_of_schedule(kube, name: str) -> list[dict]:
    path = GROUP_SNAPSHOTS.object_path(NAMESPACE, "").rstrip("/")
    return kube.request("GET", path, {"labelSelector": f"stork.libopenstorage.org/snapshot-schedule={name}"})["items"]


def test_an_interval_schedule_keeps_retain_and_delete_reclaims_its_snapshots(cluster, kube, app):
    interval_policy(kube, "every-4s", minutes=1, retain=2)
    schedule(kube, "frequent", "every-4s", preExecRule="quiesce", postExecRule="record")

    seen: set[str] = set()

    def settled():
        items = (
            kube.get(SNAPSHOT_SCHEDULES, NAMESPACE, "frequent").get("status", {}).get("items", {}).get("Interval", [])
        )
        seen.update(i["name"] for i in items)
        live = {g["metadata"]["name"] for g in groups_of_schedule(kube, "frequent")}
        successful = [i for i in items if i["status"] == "Successful"]
        return (items, live) if len(seen) >= 4 and len(successful) == 2 and seen - live else None

    wait_for(settled, 90, "four triggers and retention")
    # Stop triggering so that retention stops deleting what is checked next.
    kube.patch(SNAPSHOT_SCHEDULES, NAMESPACE, "frequent", {"spec": {"suspend": True}})

    def quiet():
        items = kube.get(SNAPSHOT_SCHEDULES, NAMESPACE, "frequent")["status"]["items"]["Interval"]
        finished = all(i["status"] in ("Successful", "Failed") for i in items)
        return items if finished and [i["status"] for i in items].count("Successful") == 2 else None

    items = wait_for(quiet, 60, "the suspended schedule to settle")
    live = {g["metadata"]["name"] for g in groups_of_schedule(kube, "frequent")}
    successful = [i for i in items if i["status"] == "Successful"]
    assert len(successful) == 2 and {i["name"] for i in successful} <= live  # exactly retain, still there
    for item in successful:  # scheduled snapshots run the rules too
        assert copies_consistent(app, kube.get(GROUP_SNAPSHOTS, NAMESPACE, item["name"]))
    kube.delete(SNAPSHOT_SCHEDULES, NAMESPACE, "frequent", {"propagationPolicy": "Foreground"})
    wait_for(lambda: not groups_of_schedule(kube, "frequent"), 60, "reclaimPolicy Delete to remove the group snapshots")
    wait_for(
        lambda: not [s for s in _all_snapshots(kube) if s["metadata"]["name"].startswith("frequent-")],
        60,
        "their VolumeSnapshots to go",
    )


def _all_snapshots(kube) -> list[dict]:
    return kube.request("GET", VOLUME_SNAPSHOTS.object_path(NAMESPACE, "").rstrip("/"))["items"]


def test_a_restarted_controller_catches_a_missed_interval_up_once(cluster, kube, app):
    interval_policy(kube, "every-8s", minutes=2, retain=5)
    schedule(kube, "catch-up", "every-8s", reclaimPolicy="Retain")
    wait_for(lambda: groups_of_schedule(kube, "catch-up"), 30, "the first trigger")
    cluster.stop_process(CONTROLLER)
    time.sleep(26)  # three windows of 8 s pass while it is down
    before = len(groups_of_schedule(kube, "catch-up"))
    cluster.start_controller(CONTROLLER, "csi", CONTROLLER_ARGS)
    wait_for(lambda: len(groups_of_schedule(kube, "catch-up")) > before, 30, "the catch-up trigger")
    time.sleep(4)  # half a window: a second catch-up would show by now
    assert len(groups_of_schedule(kube, "catch-up")) == before + 1
    kube.delete(SNAPSHOT_SCHEDULES, NAMESPACE, "catch-up")
    time.sleep(2)
    assert len(groups_of_schedule(kube, "catch-up")) == before + 1  # Retain: they outlive the schedule
