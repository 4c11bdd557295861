"""The GroupVolumeSnapshot stage machine and rule execution, with an injected clock."""

from __future__ import annotations

import pytest

from controller.groupsnapshots import GroupSnapshotController, GroupSnapshotSettings
from controller.rules import RuleFailed, RuleRunner, RuleSettings, container_for, wait_script
from tests.unit.snapshot_fakes import FakeClock, FakeExecutor, FakeSnapshotCluster, group, pod, pvc, rule

LOCK = {"type": "command", "value": "lock && ${WAIT_CMD}", "background": True}
PRE = rule("quiesce", {"podSelector": {"app": "db"}, "actions": [LOCK]})
POST = rule("resume", {"podSelector": {"app": "db"}, "actions": [{"type": "command", "value": "echo resumed"}]})


def world(**cluster_args):
    clock = FakeClock()
    executor = FakeExecutor()
    cluster = FakeSnapshotCluster(clock, executor, **cluster_args)
    cluster.pvcs_ = [pvc("data", {"app": "db"}), pvc("logs", {"app": "db"}), pvc("other", {"app": "web"})]
    cluster.pods_ = [pod("db-0", {"app": "db"}), pod("web-0", {"app": "web"})]
    cluster.rules_ = {"quiesce": PRE, "resume": POST}
    runner = RuleRunner(
        executor, cluster, RuleSettings(action_timeout=5, hold_timeout=60), clock, clock.wall, clock.sleep
    )
    settings = GroupSnapshotSettings(prechecks_timeout=10, cut_timeout=8, ready_timeout=20, poll=0.5)
    leader = {"yes": True}
    controller = GroupSnapshotController(cluster, runner, settings, lambda: leader["yes"], clock, clock.sleep)
    return clock, executor, cluster, controller, leader


def status(cluster, name="gvs"):
    return cluster.groups_[name]["status"]


def test_snapshots_are_cut_while_the_application_is_held_and_it_is_released_before_the_post_rule():
    _clock, executor, cluster, controller, _ = world()
    cluster.add_group(group(preExecRule="quiesce", postExecRule="resume"))
    controller.process("ns", "gvs")
    s = status(cluster)
    assert (s["stage"], s["status"]) == ("Final", "Successful")
    assert [e["parentVolumeID"] for e in s["volumeSnapshots"]] == ["data", "logs"]  # only the selected PVCs
    assert all(e["readyToUse"] and e["creationTime"] and e["dataSource"] for e in s["volumeSnapshots"])
    line = executor.timeline
    assert line[0] == "hold db-0"
    cuts = [i for i, entry in enumerate(line) if entry.startswith("cut ")]
    assert len(cuts) == 2 and all("held=True" in line[i] for i in cuts)  # the lock covers every cut
    assert line.index("release db-0") > max(cuts)
    assert line.index("run echo resumed in db-0/app") > line.index("release db-0")
    assert not executor.holding() and "ruleTasks" not in s
    snap = cluster.snapshots["gvs-data-0"]
    assert snap["metadata"]["ownerReferences"][0]["uid"] == "uid-gvs"
    assert snap["spec"] == {"volumeSnapshotClassName": "csi-snap", "source": {"persistentVolumeClaimName": "data"}}
    assert [r for _, r, _ in cluster.events][-1] == "Successful"


def test_a_failing_pre_rule_fails_the_group_and_leaves_nothing_held_or_behind():
    _clock, executor, cluster, controller, _ = world()
    cluster.rules_["quiesce"] = rule(
        "quiesce",
        {"podSelector": {"app": "db"}, "actions": [LOCK, {"type": "command", "value": "flush"}]},
    )
    executor.exit_codes["flush"] = 2
    cluster.add_group(group(preExecRule="quiesce", postExecRule="resume"))
    controller.process("ns", "gvs")
    s = status(cluster)
    assert s["status"] == "Failed"
    assert "rules[0].actions[1]" in s["reason"] and "exit 2" in s["reason"]
    assert not executor.holding()  # the background lock was released
    assert "run echo resumed in db-0/app" in executor.timeline  # the post-rule undid the pre-rule
    assert cluster.snapshots == {}


def test_a_snapshot_that_is_never_cut_releases_the_lock_at_the_deadline():
    clock, executor, cluster, controller, _ = world(cut_after=-1)
    cluster.add_group(group(preExecRule="quiesce", postExecRule="resume"))
    controller.process("ns", "gvs")
    s = status(cluster)
    assert s["status"] == "Failed" and "not cut within 8s" in s["reason"]
    assert not executor.holding()
    assert executor.timeline.index("release db-0") < executor.timeline.index("run echo resumed in db-0/app")
    assert cluster.snapshots == {} and sorted(cluster.deleted) == ["gvs-data-0", "gvs-logs-0"]
    assert clock.now < 8 + 5 + 10  # nothing waited past its deadline


def test_retries_honour_max_retries():
    _, _, cluster, controller, _ = world(fail_cuts=2)
    cluster.add_group(group(maxRetries=1))
    controller.process("ns", "gvs")
    s = status(cluster)
    assert (s["status"], s["numRetries"]) == ("Successful", 1)
    assert sorted(cluster.snapshots) == ["gvs-data-1", "gvs-logs-1"]  # the failed attempt's are gone

    _, _, cluster, controller, _ = world(fail_cuts=10)
    cluster.add_group(group(maxRetries=2))
    controller.process("ns", "gvs")
    s = status(cluster)
    assert (s["status"], s["numRetries"]) == ("Failed", 2)
    assert "simulated driver failure" in s["reason"]
    assert cluster.snapshots == {}


def left_by_a_dead_controller(stage: str) -> dict:
    task = {
        "taskID": "t1",
        "rule": "quiesce",
        "started": "2027-01-15T08:00:00Z",
        "holdDeadline": "2030-01-01T00:00:00Z",
        "pods": [
            {"namespace": "ns", "name": "db-0", "uid": "uid-db-0", "container": "app", "mark": "/tmp/stork-rule-t1-0"}
        ],
    }
    return {"stage": stage, "status": "InProgress", "ruleTasks": [task], "numRetries": 0}


@pytest.mark.parametrize("retries,expected", [(0, "Failed"), (1, "Successful")])
def test_a_restarted_controller_aborts_an_attempt_left_under_the_lock(retries, expected):
    _, executor, cluster, controller, _ = world()
    executor.files.add("db-0:/tmp/stork-rule-t1-0.reached")  # the old controller's hold, still on
    cluster.add_group(
        group(preExecRule="quiesce", postExecRule="resume", maxRetries=retries), left_by_a_dead_controller("Snapshot")
    )
    cluster.snapshots["gvs-data-0"] = {
        "metadata": {"name": "gvs-data-0", "labels": {"stork.libopenstorage.org/group-snapshot": "gvs"}}
    }
    controller.process("ns", "gvs")
    s = status(cluster)
    assert s["status"] == expected
    assert executor.timeline[0] == "release db-0"  # first of all, the application goes on
    assert "gvs-data-0" in cluster.deleted
    if expected == "Failed":
        assert "restarted during Snapshot" in s["reason"]
    assert not executor.holding()


def test_a_restart_after_the_cut_carries_on_without_a_new_snapshot():
    _, executor, cluster, controller, _ = world()
    cluster.add_group(
        group(postExecRule="resume"),
        {"stage": "PostSnapshot", "status": "InProgress", "volumeSnapshots": [{"volumeSnapshotName": "gvs-data-0"}]},
    )
    cluster.snapshots["gvs-data-0"] = {
        "metadata": {"name": "gvs-data-0"},
        "status": {"creationTime": "x", "readyToUse": True},
    }
    controller.process("ns", "gvs")
    assert status(cluster)["status"] == "Successful"
    assert "run echo resumed in db-0/app" in executor.timeline and not any(
        t.startswith("create") for t in executor.timeline
    )


def test_prechecks_wait_with_the_reason_then_fail_at_their_deadline():
    clock, _, cluster, controller, _ = world()
    cluster.pvcs_[0]["status"]["phase"] = "Pending"
    seen = []
    clock.on_sleep.append(lambda: seen.append((status(cluster).get("status"), status(cluster).get("reason"))))
    cluster.add_group(group())
    controller.process("ns", "gvs")
    assert ("Pending", "PVC data not Bound yet") in seen
    s = status(cluster)
    assert s["status"] == "Failed" and s["reason"].startswith("PreChecks: still not possible after 10s")


@pytest.mark.parametrize(
    "spec,reason",
    [
        ({"pvcSelector": {"matchLabels": {"app": "none"}}}, "spec.pvcSelector matches no PVC in namespace ns"),
        ({"preExecRule": "missing"}, "spec.preExecRule: Rule missing not found in namespace ns"),
        ({"postExecRule": "quiesce"}, "spec.postExecRule: a post-rule cannot have background actions"),
        ({"volumeSnapshotClassName": "nope"}, "spec.volumeSnapshotClassName: VolumeSnapshotClass nope not found"),
    ],
)
def test_prechecks_name_what_is_missing(spec, reason):
    _, _, cluster, controller, _ = world()
    cluster.add_group(group(**spec))
    controller.process("ns", "gvs")
    assert status(cluster)["reason"].endswith(reason)


def test_a_controller_that_loses_the_lease_releases_and_leaves_the_status_to_the_next_leader():
    clock, executor, cluster, controller, leader = world(cut_after=-1)
    clock.on_sleep.append(lambda: leader.update(yes=clock.now < 2))
    cluster.add_group(group(preExecRule="quiesce"))
    controller.process("ns", "gvs")
    s = status(cluster)
    assert (s["stage"], s["status"]) == ("Snapshot", "InProgress")  # not Failed: recovery is the next leader's
    assert not executor.holding()


def test_rule_items_without_pods_are_skipped_with_a_warning_and_single_pod_actions_run_once():
    clock, executor, cluster, _, _ = world()
    cluster.pods_ = [
        pod("db-0", {"app": "db"}),
        pod("db-1", {"app": "db"}),
        pod("db-2", {"app": "db"}, phase="Pending"),
    ]
    runner = RuleRunner(executor, cluster, RuleSettings(action_timeout=5), clock, clock.wall, clock.sleep)
    events = []
    once = rule(
        "r",
        {"podSelector": {"app": "cache"}, "actions": [{"type": "command", "value": "never"}]},
        {"podSelector": {"app": "db"}, "actions": [{"type": "command", "value": "one", "runInSinglePod": True}]},
        {"podSelector": {"app": "db"}, "actions": [{"type": "command", "value": "all"}]},
    )
    runner.run("ns", once, lambda *e: events.append(e))
    assert events[0][:2] == ("Warning", "RuleNoPods") and "rules[0]" in events[0][2]
    runs = [t for t in executor.timeline if t.startswith("run ")]
    assert sorted(runs) == [
        "run all in db-0/app",
        "run all in db-1/app",
        "run one in db-0/app",
    ]  # never the Pending pod


def test_a_hanging_action_fails_at_its_deadline_and_a_background_action_that_dies_fails_at_once():
    clock, executor, cluster, _, _ = world()
    runner = RuleRunner(executor, cluster, RuleSettings(action_timeout=5), clock, clock.wall, clock.sleep)
    executor.hanging.add("sleep forever")
    with pytest.raises(RuleFailed, match="no exit within 5s"):
        runner.run(
            "ns",
            rule("r", {"podSelector": {"app": "db"}, "actions": [{"type": "command", "value": "sleep forever"}]}),
            print,
        )
    executor.background_dies = True
    started = clock.now
    with pytest.raises(RuleFailed, match=r"ended \(exit 3\) before \$\{WAIT_CMD\}: lock refused"):
        runner.run("ns", PRE, print)
    assert clock.now - started < 1


def test_container_choice_and_the_wait_script_has_its_own_limit():
    p = pod("db-0", {}, containers=("sidecar", "mysql"), **{"kubectl.kubernetes.io/default-container": "mysql"})
    assert container_for(p, None) == "mysql"
    assert container_for(p, "sidecar") == "sidecar"
    assert container_for(pod("x", {}, containers=("first", "second")), None) == "first"
    script = wait_script("/tmp/m", 300)
    assert "+ 300" in script and "/tmp/m.release" in script and script.startswith("touch /tmp/m.reached")


def test_a_stopping_controller_releases_what_it_holds_at_once():
    clock, executor, cluster, _, _ = world()
    runner = RuleRunner(
        executor, cluster, RuleSettings(action_timeout=5, hold_timeout=300), clock, clock.wall, clock.sleep
    )
    runner.run("ns", PRE, print)
    assert executor.holding()
    runner.release_all()
    assert not executor.holding() and clock.now < 5


def test_the_post_rule_runs_only_once_the_pre_rule_has_unlocked():
    _, executor, cluster, controller, _ = world()
    executor.unlock_polls = 20  # the command after ${WAIT_CMD} takes a while to end
    cluster.add_group(group(preExecRule="quiesce", postExecRule="resume"))
    controller.process("ns", "gvs")
    line = executor.timeline
    assert status(cluster)["status"] == "Successful"
    assert line.index("release db-0") < line.index("unlocked db-0") < line.index("run echo resumed in db-0/app")


def test_two_group_snapshots_of_one_namespace_never_hold_the_application_at_once():
    import threading

    _, executor, cluster, controller, _ = world()
    cluster.add_group(group("gvs-a", preExecRule="quiesce", postExecRule="resume"))
    cluster.add_group(group("gvs-b", preExecRule="quiesce", postExecRule="resume"))
    workers = [threading.Thread(target=controller.process, args=("ns", name)) for name in ("gvs-a", "gvs-b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [status(cluster, n)["status"] for n in ("gvs-a", "gvs-b")] == ["Successful", "Successful"]
    holds = [t.split()[0] for t in executor.timeline if t.split()[0] in ("hold", "release")]
    assert holds == ["hold", "release", "hold", "release"]  # one after the other, never overlapping
