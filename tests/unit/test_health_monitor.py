"""The storage health monitor (SPEC §6): every rule and safeguard, with a fake clock."""

from __future__ import annotations

import pytest

from controller.health import HealthMonitor, MonitorSettings
from storkcore.events import EventRecorder
from tests.builders import k8s_node, lh_node, longhorn_world, meta, pod

NODES = [f"n{i}" for i in range(1, 7)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Deletions:
    """Records deletions and applies them to the in-memory state as the API would:
    a graceful delete marks the pod terminating, a forced one removes it."""

    def __init__(self, world, clock: Clock) -> None:
        self.world = world
        self.clock = clock
        self.done: list[tuple[str, int | None, float]] = []

    def delete(self, pod, grace_seconds):
        self.done.append((pod["metadata"]["name"], grace_seconds, self.clock.now))
        if grace_seconds == 0:
            self.world.remove(pod)
        else:
            terminating = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-11-26T10:00:00Z"}}
            self.world.add(terminating)

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.done]


class Counters:
    def __init__(self) -> None:
        self.rescheduled_count = 0
        self.skips: list[str] = []
        self.offline = 0

    def rescheduled(self) -> None:
        self.rescheduled_count += 1

    def skipped(self, reason: str) -> None:
        self.skips.append(reason)

    def offline_nodes(self, count: int) -> None:
        self.offline = count


class Harness:
    def __init__(self, world, leader=lambda: True, settings: MonitorSettings | None = None) -> None:
        self.world = world
        self.clock = Clock()
        self.deletions = Deletions(world, self.clock)
        self.events = EventRecorder(None, "stork-controller", clock=self.clock)
        self.counters = Counters()
        self.monitor = HealthMonitor(
            world.driver, self.deletions, self.events, settings or MonitorSettings(), self.clock, leader, self.counters
        )

    def run(self, seconds: float, at: dict[float, object] | None = None) -> None:
        """Tick for `seconds` of fake time; `at` runs callbacks at their offsets from now."""
        start = self.clock.now
        end = start + seconds
        pending = sorted((start + offset, action) for offset, action in (at or {}).items())
        while True:
            while pending and pending[0][0] <= self.clock.now:
                pending.pop(0)[1]()
            wait = self.monitor.tick()
            upcoming = [self.clock.now + max(wait, 0.5), end, *(when for when, _ in pending[:1])]
            following = min(upcoming)
            if self.clock.now >= end:
                return
            self.clock.now = following


def world_with_pods(pods_on_n1: int = 7, storage_down=(), offline=()):
    world = longhorn_world({n: {} for n in NODES}, {"vol": ["n1", "n2"]}, storage_down=storage_down, offline=offline)
    for i in range(pods_on_n1):
        world.add(pod(f"app-{i}", ["pvc-vol"], node="n1", phase="Running"))
    return world


def test_offline_node_pods_are_deleted_after_backoff_in_batches():
    h = Harness(world_with_pods(7))
    h.world.add(lh_node("n1", ready=False))
    h.run(149)
    assert h.deletions.done == []  # still re-checking (about 2.5 minutes)
    h.run(11)
    assert len(h.deletions.done) == 5  # the first batch
    h.run(31)
    assert len(h.deletions.done) == 7  # the rest, 30 s later
    first, second = h.deletions.done[4][2], h.deletions.done[5][2]
    assert second - first >= 30
    assert all(grace is None for _, grace, _ in h.deletions.done)  # Kubernetes node still Ready: graceful
    assert {r for r in (e["reason"] for e in h.events.posted)} == {"StorageDriverOffline"}
    assert h.counters.rescheduled_count == 7


def test_node_back_during_backoff_stops_everything():
    h = Harness(world_with_pods(3))
    h.world.add(lh_node("n1", ready=False))
    h.run(300, at={60: lambda: h.world.add(lh_node("n1"))})
    assert h.deletions.done == []


def test_node_back_between_batches_stops_the_deletions():
    h = Harness(world_with_pods(12))
    h.world.add(lh_node("n1", ready=False))
    h.run(170, at={165: lambda: h.world.add(lh_node("n1"))})  # first batch at ~150, back at 165
    assert len(h.deletions.done) == 5
    h.run(120)
    assert len(h.deletions.done) == 5


def test_too_many_offline_nodes_means_no_action():
    h = Harness(world_with_pods(3))
    for n in ("n1", "n2", "n3", "n4"):  # 4 of 6 > 50 %
        h.world.add(lh_node(n, ready=False))
    h.run(400)
    assert h.deletions.done == []
    assert "too-many-offline" in h.counters.skips


def test_max_offline_fraction_is_configurable():
    h = Harness(world_with_pods(1), settings=MonitorSettings(max_offline_fraction=0.1))
    h.world.add(lh_node("n1", ready=False))  # 1 of 6 > 10 %
    h.run(400)
    assert h.deletions.done == []


def test_storage_down_is_never_acted_on():
    h = Harness(world_with_pods(3, storage_down=["n1"]))
    h.run(400)
    assert h.deletions.done == []


def test_opted_out_mirror_daemonset_and_plain_pods_are_never_touched():
    world = world_with_pods(1)
    world.add(
        pod(
            "opted-out", ["pvc-vol"], node="n1", annotations={"stork.libopenstorage.org/disable-health-monitor": "true"}
        )
    )
    world.add(pod("static", ["pvc-vol"], node="n1", annotations={"kubernetes.io/config.mirror": "abc"}))
    daemon = pod("daemon", ["pvc-vol"], node="n1")
    daemon["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "x"}]
    world.add(daemon, pod("no-volumes", [], node="n1"))
    h = Harness(world)
    h.world.add(lh_node("n1", ready=False))
    h.run(400)
    assert h.deletions.names == ["app-0"]


def test_stale_offline_record_of_a_replaced_node_is_ignored():
    world = world_with_pods(2)
    # n1's storage record is offline, but a new node "n1-new" carries its IP and is online.
    world.add(k8s_node("n1-new", internal_ips=["10.0.0.1"]), lh_node("n1-new"))
    world.add(lh_node("n1", ready=False))
    h = Harness(world)
    h.run(400)
    assert h.deletions.done == []
    assert "replaced-node" in h.counters.skips


def test_force_delete_only_when_the_kubernetes_node_is_not_ready():
    world = world_with_pods(2)
    world.add(k8s_node("n1", ready=False, internal_ips=["10.0.0.1"]), lh_node("n1", ready=False))
    h = Harness(world)
    h.run(400)
    assert [grace for _, grace, _ in h.deletions.done] == [0, 0]


def test_pods_stuck_terminating_on_unreachable_nodes_are_force_deleted():
    world = world_with_pods(0)
    unreachable = k8s_node("n3", ready=False)
    unreachable["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    world.add(unreachable)
    stuck = pod("stuck", ["pvc-vol"], node="n3")
    stuck["metadata"]["deletionTimestamp"] = "2026-11-26T10:00:00Z"
    lost = pod("lost", ["pvc-vol"], node="n4")
    lost["metadata"]["deletionTimestamp"] = "2026-11-26T10:00:00Z"
    lost["status"]["reason"] = "NodeLost"
    healthy_terminating = pod("leaving", ["pvc-vol"], node="n5")
    healthy_terminating["metadata"]["deletionTimestamp"] = "2026-11-26T10:00:00Z"
    plain = pod("plain", [], node="n3")
    plain["metadata"]["deletionTimestamp"] = "2026-11-26T10:00:00Z"
    world.add(stuck, lost, healthy_terminating, plain)
    h = Harness(world)
    h.run(300)
    assert sorted(h.deletions.done) == [("lost", 0, 1000.0), ("stuck", 0, 1000.0)]  # once each


def test_only_the_leader_acts_and_losing_the_lease_stops_at_once():
    leading = {"now": False}
    h = Harness(world_with_pods(7), leader=lambda: leading["now"])
    h.world.add(lh_node("n1", ready=False))
    h.run(400)
    assert h.deletions.done == []
    leading["now"] = True
    h.run(155)
    assert len(h.deletions.done) == 5
    leading["now"] = False
    h.run(120)
    assert len(h.deletions.done) == 5


def test_leadership_lost_in_the_middle_of_a_batch():
    calls = {"n": 0}

    def leader() -> bool:
        calls["n"] += 1
        return calls["n"] < 8  # goes away after a few questions

    h = Harness(world_with_pods(5), leader=leader)
    h.world.add(lh_node("n1", ready=False))
    h.run(400)
    assert 0 < len(h.deletions.done) < 5


def test_interval_minimum_and_settings_scaling():
    from controller.cli import build_parser, settings_from

    parser = build_parser()
    with pytest.raises(SystemExit):
        settings_from(parser, parser.parse_args(["--driver", "longhorn", "--health-monitor-interval", "10"]))
    args = parser.parse_args(
        [
            "--driver",
            "longhorn",
            "--health-monitor-interval",
            "2",
            "--unsafe-short-intervals",
            "--offline-backoff",
            "10",
        ]
    )
    settings = settings_from(parser, args)
    assert settings.interval == 2 and sum(settings.backoff) == pytest.approx(10)
    default = settings_from(parser, parser.parse_args(["--driver", "longhorn"]))
    assert default.interval == 120 and sum(default.backoff) == pytest.approx(150) and default.batch_size == 5


def test_meta_helper_is_deterministic():
    assert meta("x")["name"] == "x"
