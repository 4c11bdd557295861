"""Leader election on a Lease: one leader; takeover after expiry; a leader that cannot renew stops."""

from __future__ import annotations

import copy

from controller.leader import LeaderElector, LeaseSettings
from storkcore.kube import ApiError


class Leases:
    """Leases in memory with the API's optimistic concurrency (resourceVersion, 409)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("apiserver unreachable")

    def get(self, namespace, name):
        self._check()
        found = self.objects.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create(self, namespace, body):
        self._check()
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ApiError(409, b"exists")
        return self._store(key, body)

    def replace(self, namespace, name, body):
        self._check()
        current = self.objects[(namespace, name)]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, b"conflict")
        return self._store((namespace, name), body)

    def _store(self, key, body):
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def holder(self) -> str:
        return self.objects[("stork", "stork-controller")]["spec"]["holderIdentity"]


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def electors(leases: Leases, clock: Clock) -> tuple[LeaderElector, LeaderElector]:
    settings = LeaseSettings()
    return LeaderElector(leases, settings, "a", clock), LeaderElector(leases, settings, "b", clock)


def test_one_leader_and_the_other_waits():
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    for _ in range(10):  # a keeps renewing: b never gets it
        clock.now += 2
        assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert leases.holder() == "a" and a.is_leader() and not b.is_leader()


def test_takeover_after_the_leader_stops_renewing():
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()  # b sees a's lease
    clock.now += 10
    assert not b.try_acquire_or_renew()  # not expired yet (15 s by b's own observation)
    clock.now += 6
    assert b.try_acquire_or_renew() is True
    assert leases.holder() == "b"
    assert leases.objects[("stork", "stork-controller")]["spec"]["leaseTransitions"] == 1
    assert not a.is_leader()  # a's own renewal is older than its deadline


def test_leader_that_cannot_renew_stops_acting_before_the_lease_expires():
    leases, clock = Leases(), Clock()
    a, _ = electors(leases, clock)
    a.try_acquire_or_renew()
    leases.down = True
    clock.now += 5
    assert a.try_acquire_or_renew() is True  # last renewal 5 s ago: still inside the deadline
    clock.now += 5.5
    assert a.try_acquire_or_renew() is False  # 10.5 s > renew deadline (10 s) < lease (15 s)
    assert not a.is_leader()


def test_leadership_changes_are_reported():
    leases, clock = Leases(), Clock()
    changes: list[bool] = []
    a = LeaderElector(leases, LeaseSettings(), "a", clock, on_change=changes.append)
    a.try_acquire_or_renew()
    clock.now += 11
    a.is_leader()
    assert changes == [True, False]


def test_a_replica_that_lost_the_lease_competes_again_and_leads_later():
    """Unlike kubernetes.leaderelection, whose run() returns for good after losing the lease."""
    leases, clock = Leases(), Clock()
    a, b = electors(leases, clock)
    assert a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    leases.down = True  # a cannot renew ...
    clock.now += 11
    assert not a.try_acquire_or_renew() and not a.is_leader()
    leases.down = False
    clock.now += 5
    assert b.try_acquire_or_renew() and leases.holder() == "b"  # ... b took over
    for _ in range(3):
        clock.now += 2
        assert b.try_acquire_or_renew() and not a.try_acquire_or_renew()
    clock.now += 10  # b stopped renewing (gone); a is still a candidate ...
    assert not a.try_acquire_or_renew()  # ... that waits until it saw the lease unchanged for 15 s
    clock.now += 6
    assert a.try_acquire_or_renew() and a.is_leader() and leases.holder() == "a"


def test_stop_ends_the_election_thread():
    """Unlike the library's acquire/renew loops, which never return while they wait."""
    import threading

    leases = Leases()
    calls: list[str] = []
    asked = threading.Event()
    original_get = leases.get

    def counting_get(namespace, name):
        calls.append(name)
        asked.set()
        return original_get(namespace, name)

    leases.get = counting_get  # type: ignore[method-assign]
    elector = LeaderElector(leases, LeaseSettings(retry_period=0.01), "a")
    thread = threading.Thread(target=elector.run)
    thread.start()
    assert asked.wait(2)
    elector.stop()
    thread.join(timeout=2)
    assert not thread.is_alive()
    made = len(calls)
    threading.Event().wait(0.05)
    assert len(calls) == made  # no lease calls after stop
