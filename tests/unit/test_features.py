"""Controller features start on their own: one waiting for a kind the cluster does not serve
never keeps another from running, and each state change is logged once and exported."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from controller.features import PROBE_INTERVAL, RUNNING, Feature, Features
from storkcore.kube import NODES, PODS
from storkcore.snapshots import GROUP_SNAPSHOTS, VOLUME_SNAPSHOTS


class Caches:
    """The two things Features asks the cluster: each cache's state, and whether it listed."""

    def __init__(self, states):
        self.states = states

    def kind_states(self):
        return dict(self.states)

    def synced_for(self, resources):
        return all(self.states.get(r) == "synced" for r in resources if r in self.states)


class Part:
    def __init__(self, fail=None):
        self.ticks = 0
        self.fail = fail

    def tick(self):
        self.ticks += 1
        if self.fail:
            raise RuntimeError(self.fail)
        return 2.0


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def features(states, served=None, clock=None):
    served = served if served is not None else {}
    probes = []

    def probe(resource):
        probes.append(resource)
        return served.get(resource, "")

    registry = CollectorRegistry()
    found = Features(Caches(states), probe, registry, clock or Clock())
    return found, registry, probes


def ready_gauge(registry, name):
    return registry.get_sample_value("stork_controller_feature_ready", {"feature": name})


def test_a_feature_waiting_for_an_unserved_kind_never_stops_the_others(caplog):
    caplog.set_level(logging.INFO)
    states = {NODES: "synced", PODS: "synced", GROUP_SNAPSHOTS: "not served"}
    found, registry, _ = features(states)
    monitor, groups = Part(), Part()
    found.add(Feature("health-monitor", lambda: monitor, cached=(NODES, PODS)))
    found.add(Feature("group-snapshots", lambda: groups, cached=(GROUP_SNAPSHOTS, PODS)))
    for _ in range(5):
        assert found.tick() == 2.0
    assert monitor.ticks == 5 and groups.ticks == 0
    assert found.states() == {
        "health-monitor": RUNNING,
        "group-snapshots": "waiting for groupvolumesnapshots.stork.libopenstorage.org: not served",
    }
    assert ready_gauge(registry, "health-monitor") == 1 and ready_gauge(registry, "group-snapshots") == 0
    assert found.ready()  # a partial install: shown, not a fault
    # The CRD is applied and its cache lists: the same process starts the feature.
    states[GROUP_SNAPSHOTS] = "synced"
    found.tick()
    assert groups.ticks == 1 and found.states()["group-snapshots"] == RUNNING
    assert ready_gauge(registry, "group-snapshots") == 1
    said = [(r.getMessage(), getattr(r, "feature", "")) for r in caplog.records if r.name == "controller.features"]
    assert said == [
        ("feature running", "health-monitor"),
        ("feature waiting", "group-snapshots"),  # once, not once per tick
        ("feature running", "group-snapshots"),
    ]


def test_a_cache_still_listing_or_failing_makes_the_controller_not_ready():
    found, _, _ = features({NODES: "failing: ConnectionError"})
    found.add(Feature("health-monitor", Part, cached=(NODES,)))
    found.tick()
    assert found.states()["health-monitor"] == "waiting for nodes: failing: ConnectionError"
    assert not found.ready()


def test_a_precondition_holds_a_feature_and_is_named():
    answered = False
    found, _, _ = features({})
    found.add(Feature("health-monitor", Part, precondition=lambda: "" if answered else "the storage system"))
    found.tick()
    assert found.states()["health-monitor"] == "waiting for the storage system" and not found.ready()
    answered = True
    found.tick()
    assert found.states()["health-monitor"] == RUNNING and found.ready()


def test_a_kind_used_directly_is_probed_until_served_at_most_every_interval():
    clock = Clock()
    served = {VOLUME_SNAPSHOTS: "not served"}
    found, _, probes = features({}, served, clock)
    found.add(Feature("group-snapshots", Part, served=(VOLUME_SNAPSHOTS,)))
    found.tick()
    clock.now += PROBE_INTERVAL / 2
    found.tick()
    assert len(probes) == 1
    assert found.states()["group-snapshots"] == "waiting for volumesnapshots.snapshot.storage.k8s.io: not served"
    served[VOLUME_SNAPSHOTS] = ""
    clock.now += PROBE_INTERVAL
    found.tick()
    assert len(probes) == 2 and found.states()["group-snapshots"] == RUNNING
    clock.now += 5 * PROBE_INTERVAL
    found.tick()
    assert len(probes) == 2  # served once: not asked again


def test_a_failing_feature_is_logged_once_and_recovers(caplog):
    caplog.set_level(logging.INFO)
    part = Part(fail="apiserver said no")
    found, registry, _ = features({})
    found.add(Feature("schedules", lambda: part))
    for _ in range(3):
        found.tick()
    assert found.states()["schedules"] == "failing: RuntimeError: apiserver said no"
    assert ready_gauge(registry, "schedules") == 0
    part.fail = None
    found.tick()
    assert found.states()["schedules"] == RUNNING
    failing = [r for r in caplog.records if r.getMessage() == "feature failing"]
    assert len(failing) == 1
