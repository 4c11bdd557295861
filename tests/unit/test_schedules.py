"""Snapshot schedules with an injected clock: every policy type, retention, catch-up, suspend,
timezones, and an item that never finishes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from controller.schedules import (
    SCHEDULE_LABEL,
    ScheduleController,
    ScheduleSettings,
    latest_window,
    parse_time,
    parse_weekday,
)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


class FakeCluster:
    def __init__(self) -> None:
        self.schedule = {
            "metadata": {
                "name": "nightly",
                "namespace": "shop",
                "uid": "uid-s",
                "creationTimestamp": "2027-03-01T00:00:00Z",
            },
            "spec": {
                "schedulePolicyName": "p",
                "template": {"spec": {"pvcSelector": {"matchLabels": {"app": "db"}}}},
                "preExecRule": "lock",
            },
        }
        self.policies: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str, str]] = []

    def schedules(self):
        return [copy.deepcopy(self.schedule)]

    def policy(self, name):
        return self.policies.get(name)

    def group(self, namespace, name):
        return self.groups.get(name)

    def create_group(self, namespace, body):
        self.groups[body["metadata"]["name"]] = copy.deepcopy(dict(body))
        self.created.append(body)

    def delete_group(self, namespace, name):
        self.groups.pop(name, None)
        self.deleted.append(name)

    def patch_schedule_status(self, namespace, name, status):
        self.schedule.setdefault("status", {}).update(copy.deepcopy(dict(status)))

    def event(self, obj, event_type, reason, message):
        self.events.append((event_type, reason, message))

    def finish(self, state="Successful"):
        for group in self.groups.values():
            group.setdefault("status", {}).setdefault("status", state)

    def items(self, kind):
        return self.schedule.get("status", {}).get("items", {}).get(kind, [])


def setup(policy: dict, start: datetime, timezone: str = "UTC"):
    cluster = FakeCluster()
    cluster.policies["p"] = {"metadata": {"name": "p"}, "policy": policy}
    cluster.schedule["metadata"]["creationTimestamp"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    clock = Clock(start)
    return cluster, clock, ScheduleController(cluster, ScheduleSettings(timezone), clock)


def test_times_and_weekdays_parse_as_upstream_writes_them():
    assert parse_time("10:14PM") == (22, 14)
    assert parse_time("12:00AM") == (0, 0) and parse_time("12:30PM") == (12, 30)
    assert parse_weekday("Sunday") == 6 and parse_weekday("mon") == 0
    for bad in ("22:14", "10:14", "13:00PM", "10:60AM", None):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_an_interval_schedule_triggers_at_once_then_every_interval_and_keeps_retain():
    cluster, clock, controller = setup(
        {"interval": {"intervalMinutes": 10, "retain": 2}}, datetime(2027, 3, 1, 8, tzinfo=UTC)
    )
    controller.tick()
    (first,) = cluster.created
    assert first["metadata"]["name"] == "nightly-interval-2027-03-01-080000"
    assert first["metadata"]["labels"][SCHEDULE_LABEL] == "nightly"
    assert first["metadata"]["ownerReferences"][0]["uid"] == "uid-s"  # reclaimPolicy Delete by default
    assert first["spec"] == {"pvcSelector": {"matchLabels": {"app": "db"}}, "preExecRule": "lock"}
    for _ in range(5):
        clock.advance(minutes=9)
        controller.tick()
        cluster.finish()
        clock.advance(minutes=1)
        controller.tick()
    assert len(cluster.created) == 6
    cluster.finish()
    controller.tick()
    items = cluster.items("Interval")
    assert [i["status"] for i in items] == ["Successful", "Successful"]  # retain 2
    assert [i["name"] for i in items] == [g["metadata"]["name"] for g in cluster.created[-2:]]
    assert all(i["finishTimestamp"] for i in items)
    assert len(cluster.deleted) == 4


def test_failed_and_stuck_items_never_block_the_next_trigger_nor_count_toward_retain():
    cluster, clock, controller = setup(
        {"interval": {"intervalMinutes": 5, "retain": 1}}, datetime(2027, 3, 1, 8, tzinfo=UTC)
    )
    controller.tick()
    cluster.finish("Successful")
    clock.advance(minutes=5)
    controller.tick()  # second item: stays InProgress forever
    stuck = cluster.created[-1]["metadata"]["name"]
    cluster.groups[stuck]["status"] = {"status": "InProgress"}
    for _ in range(3):
        clock.advance(minutes=5)
        controller.tick()
        cluster.groups[cluster.created[-1]["metadata"]["name"]]["status"] = {"status": "Failed"}
    controller.tick()
    assert len(cluster.created) == 5  # every window triggered regardless
    states = [i["status"] for i in cluster.items("Interval")]
    assert states.count("Successful") == 1  # the last Successful one is never deleted
    assert states.count("InProgress") == 1 and states.count("Failed") == 1  # Failed kept up to retain


def test_daily_weekly_and_monthly_trigger_at_their_time():
    policy = {
        "daily": {"time": "10:14PM"},
        "weekly": {"day": "Friday", "time": "1:00AM"},
        "monthly": {"date": 31, "time": "6:00AM"},
    }
    cluster, clock, controller = setup(policy, datetime(2027, 2, 24, 12, tzinfo=UTC))  # a Wednesday
    controller.tick()
    assert cluster.created == []  # nothing is due right after creation
    triggered = []
    for _ in range(24 * 6):  # hour by hour through the 1st of March
        clock.advance(hours=1)
        controller.tick()
        triggered += [
            (g["metadata"]["labels"]["stork.libopenstorage.org/schedule-policy-type"], clock.at)
            for g in cluster.created[len(triggered) :]
        ]
    daily = [at for kind, at in triggered if kind == "daily"]
    assert [at.strftime("%m-%d %H") for at in daily][:2] == ["02-24 23", "02-25 23"]  # first tick after 22:14
    assert [at.strftime("%m-%d %H") for kind, at in triggered if kind == "weekly"] == ["02-26 01"]
    assert [at.strftime("%m-%d %H") for kind, at in triggered if kind == "monthly"] == ["02-28 06"]  # Feb has no 31st


def test_windows_missed_while_down_are_caught_up_once():
    cluster, clock, controller = setup({"daily": {"time": "2:00AM"}}, datetime(2027, 3, 1, 3, tzinfo=UTC))
    controller.tick()
    assert cluster.created == []
    clock.advance(days=4)  # the controller was down for four nightly windows
    controller.tick()
    controller.tick()
    assert len(cluster.created) == 1
    clock.advance(days=1)
    controller.tick()
    assert len(cluster.created) == 2


def test_suspend_stops_triggers_and_retain_policy_keeps_snapshots_with_the_schedule():
    cluster, _, controller = setup({"interval": {"intervalMinutes": 1}}, datetime(2027, 3, 1, tzinfo=UTC))
    cluster.schedule["spec"].update(suspend=True, reclaimPolicy="Retain")
    controller.tick()
    assert cluster.created == []
    cluster.schedule["spec"]["suspend"] = False
    controller.tick()
    (group,) = cluster.created
    assert "ownerReferences" not in group["metadata"]  # Retain: they outlive the schedule


def test_times_are_read_in_the_configured_timezone():
    # Asia/Kolkata has no daylight saving time: 10:14PM there is always 16:44 UTC.
    cluster, clock, controller = setup(
        {"daily": {"time": "10:14PM"}}, datetime(2027, 3, 1, 16, 40, tzinfo=UTC), timezone="Asia/Kolkata"
    )
    controller.tick()
    assert cluster.created == []
    clock.advance(minutes=5)
    controller.tick()
    assert len(cluster.created) == 1
    # Where the clocks change, the local time holds: 10:14PM New York is 02:14 UTC in summer, 03:14 in winter.
    zone = __import__("zoneinfo").ZoneInfo("America/New_York")
    summer = latest_window("daily", {"time": "10:14PM"}, datetime(2027, 7, 2, tzinfo=zone))
    winter = latest_window("daily", {"time": "10:14PM"}, datetime(2027, 12, 2, tzinfo=zone))
    assert summer.astimezone(UTC).hour == 2 and winter.astimezone(UTC).hour == 3


def test_a_missing_policy_is_reported_and_a_single_pvc_schedule_names_its_claim():
    cluster, _, controller = setup({"interval": {"intervalMinutes": 1}}, datetime(2027, 3, 1, tzinfo=UTC))
    cluster.schedule["spec"]["schedulePolicyName"] = "gone"
    controller.tick()
    assert cluster.events[-1][:2] == ("Warning", "PolicyNotFound") and cluster.created == []
    cluster.schedule["spec"].update(schedulePolicyName="p", template={"spec": {"persistentVolumeClaimName": "data"}})
    controller.tick()
    assert cluster.created[0]["spec"]["pvcNames"] == ["data"]
