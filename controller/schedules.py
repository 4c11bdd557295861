"""Snapshot schedules (SPEC §7.3): a VolumeSnapshotSchedule triggers GroupVolumeSnapshots by policy.

A `SchedulePolicy` (cluster-scoped) has up to four policy types - interval, daily, weekly,
monthly - each triggering on its own. Times are read in a configured timezone. Each trigger
creates a GroupVolumeSnapshot named `<schedule>-<type>-<UTC timestamp>` and lists it in
`status.items.<Type>`. A type is due when its latest window (for interval: its last trigger
plus the interval) has passed since its last trigger, so windows missed while stork-py was
down are caught up once, not once per window. Retention counts only Successful items; the
oldest beyond `retain` are deleted, never the last Successful one; Failed ones are kept up to
`retain` too. Nothing waits for an item to finish: a Failed or stuck one never blocks the next.

Driven by `tick()` with an injected clock (leader only).
"""

from __future__ import annotations

import calendar
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from storkcore import objects
from storkcore.snapshots import FAILED, STORK_GROUP, STORK_VERSION, SUCCESSFUL

log = logging.getLogger(__name__)

POLICY_TYPES = {"interval": "Interval", "daily": "Daily", "weekly": "Weekly", "monthly": "Monthly"}
DEFAULT_RETAIN = {"interval": 10, "daily": 30, "weekly": 7, "monthly": 12}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
KITCHEN = re.compile(r"^\s*(1[0-2]|0?[1-9]):([0-5][0-9])\s*([AaPp][Mm])\s*$")
SCHEDULE_LABEL = STORK_GROUP + "/snapshot-schedule"
POLICY_TYPE_LABEL = STORK_GROUP + "/schedule-policy-type"
DELETE, RETAIN = "Delete", "Retain"


def parse_time(text: Any) -> tuple[int, int]:
    """`10:14PM` -> (22, 14); raises ValueError on anything else."""
    found = KITCHEN.match(text) if isinstance(text, str) else None
    if not found:
        raise ValueError(f"{text!r} is not a time like 10:14PM")
    hour, minute, half = int(found[1]) % 12, int(found[2]), found[3].upper()
    return (hour + 12 if half == "PM" else hour), minute


def parse_weekday(text: Any) -> int:
    """`Sunday`, `sun` (any case) -> 6; raises ValueError."""
    if isinstance(text, str):
        word = text.strip().lower()
        for i, day in enumerate(WEEKDAYS):
            if word in (day, day[:3]):
                return i
    raise ValueError(f"{text!r} is not a weekday (Monday .. Sunday)")


def retain_of(kind: str, spec: Mapping[str, Any]) -> int:
    value = spec.get("retain")
    return value if isinstance(value, int) and value >= 1 else DEFAULT_RETAIN[kind]


def latest_window(kind: str, spec: Mapping[str, Any], now: datetime) -> datetime:
    """The most recent moment at or before `now` (local, tz-aware) when `kind` should trigger."""
    hour, minute = parse_time(spec.get("time"))

    def at(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=now.tzinfo)

    today = now.date()
    if kind == "daily":
        return at(today) if at(today) <= now else at(today - timedelta(days=1))
    if kind == "weekly":
        back = (today.weekday() - parse_weekday(spec.get("day"))) % 7
        moment = at(today - timedelta(days=back))
        return moment if moment <= now else moment - timedelta(days=7)
    if kind == "monthly":
        moment = at(_day_in_month(today.year, today.month, int(spec.get("date") or 1)))
        if moment <= now:
            return moment
        year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        return at(_day_in_month(year, month, int(spec.get("date") or 1)))
    raise ValueError(f"unknown policy type {kind}")


def _day_in_month(year: int, month: int, wanted: int) -> date:
    """The wanted date, or the month's last day when it is shorter (31 in February: the 28th/29th)."""
    return date(year, month, min(wanted, calendar.monthrange(year, month)[1]))


def is_due(kind: str, spec: Mapping[str, Any], now: datetime, last: datetime, minute: float = 60.0) -> bool:
    """Whether `kind` triggers now, its last trigger (or the schedule's creation) being `last`."""
    if kind == "interval":
        minutes = spec.get("intervalMinutes")
        return isinstance(minutes, int | float) and minutes > 0 and now - last >= timedelta(seconds=minutes * minute)
    return latest_window(kind, spec, now) > last


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


class ScheduleCluster(Protocol):
    def schedules(self) -> list[dict[str, Any]]: ...
    def policy(self, name: str) -> dict[str, Any] | None: ...
    def group(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_group(self, namespace: str, body: Mapping[str, Any]) -> None: ...
    def delete_group(self, namespace: str, name: str) -> None: ...
    def patch_schedule_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...
    def event(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class ScheduleSettings:
    timezone: str = "UTC"
    minute: float = 60.0  # seconds in an interval policy's minute (shorter only in tests and demos)


class ScheduleController:
    def __init__(
        self,
        cluster: ScheduleCluster,
        settings: ScheduleSettings = ScheduleSettings(),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.cluster = cluster
        self.zone = ZoneInfo(settings.timezone)
        self.minute = settings.minute
        self.now = now
        self.is_leader = is_leader

    def tick(self) -> None:
        if not self.is_leader():
            return
        for schedule in self.cluster.schedules():
            if objects.dig(schedule, "metadata", "deletionTimestamp"):
                continue
            try:
                self.reconcile(schedule)
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule failed", extra={"schedule": "/".join(objects.key(schedule))})

    def reconcile(self, schedule: dict[str, Any]) -> None:
        namespace, name = objects.key(schedule)
        policy_name = objects.text(schedule, "spec", "schedulePolicyName")
        policy = self.cluster.policy(policy_name)
        if policy is None:
            self.cluster.event(schedule, "Warning", "PolicyNotFound", f"SchedulePolicy {policy_name} not found")
            return
        old_items = objects.mapping(schedule, "status", "items")
        items = {kind: self._refresh(namespace, list(entries)) for kind, entries in old_items.items()}
        kinds = {k: objects.mapping(policy, "policy", k) for k in POLICY_TYPES if objects.dig(policy, "policy", k)}
        for kind, spec in kinds.items():
            entries = items.setdefault(POLICY_TYPES[kind], [])
            entries[:] = self._retain(schedule, entries, retain_of(kind, spec))
            if not objects.dig(schedule, "spec", "suspend") and self._due(schedule, kind, spec, entries):
                entries.append(self._trigger(schedule, kind))
        if items != dict(old_items):
            self.cluster.patch_schedule_status(namespace, name, {"items": items})

    def _due(self, schedule: Mapping[str, Any], kind: str, spec: Mapping[str, Any], entries: list[dict]) -> bool:
        created = [parse_rfc3339(e.get("creationTimestamp", "")) for e in entries]
        last = max((c for c in created if c is not None), default=None)
        if last is None:
            if kind == "interval":
                return True  # a new interval schedule takes its first snapshot at once
            last = parse_rfc3339(objects.text(schedule, "metadata", "creationTimestamp")) or self.now()
        try:
            return is_due(kind, spec, self.now().astimezone(self.zone), last.astimezone(self.zone), self.minute)
        except ValueError as err:  # a policy the webhook would have denied
            self.cluster.event(schedule, "Warning", "InvalidPolicy", str(err))
            return False

    def _trigger(self, schedule: Mapping[str, Any], kind: str) -> dict[str, Any]:
        namespace, name = objects.key(schedule)
        now = self.now()
        group_name = f"{name}-{kind}-{now.astimezone(UTC).strftime('%Y-%m-%d-%H%M%S')}"
        self.cluster.create_group(namespace, self._group_body(schedule, kind, group_name))
        self.cluster.event(schedule, "Normal", "Triggered", f"{POLICY_TYPES[kind]}: GroupVolumeSnapshot {group_name}")
        return {"name": group_name, "creationTimestamp": rfc3339(now), "status": "Pending"}

    def _group_body(self, schedule: Mapping[str, Any], kind: str, group_name: str) -> dict[str, Any]:
        spec = objects.mapping(schedule, "spec")
        template = objects.mapping(schedule, "spec", "template", "spec")
        group_spec: dict[str, Any] = {}
        if template.get("pvcSelector"):
            group_spec["pvcSelector"] = template["pvcSelector"]
        if template.get("persistentVolumeClaimName"):
            group_spec["pvcNames"] = [template["persistentVolumeClaimName"]]
        for field in ("preExecRule", "postExecRule"):
            if spec.get(field):
                group_spec[field] = spec[field]
        for field in ("maxRetries", "volumeSnapshotClassName", "options"):
            if field in template:
                group_spec[field] = template[field]
        metadata: dict[str, Any] = {
            "name": group_name,
            "labels": {SCHEDULE_LABEL: objects.name(schedule), POLICY_TYPE_LABEL: kind},
        }
        if (spec.get("reclaimPolicy") or DELETE) == DELETE:  # deleting the schedule deletes its snapshots
            metadata["ownerReferences"] = [
                {
                    "apiVersion": f"{STORK_GROUP}/{STORK_VERSION}",
                    "kind": "VolumeSnapshotSchedule",
                    "name": objects.name(schedule),
                    "uid": objects.text(schedule, "metadata", "uid"),
                }
            ]
        return {
            "apiVersion": f"{STORK_GROUP}/{STORK_VERSION}",
            "kind": "GroupVolumeSnapshot",
            "metadata": metadata,
            "spec": group_spec,
        }

    def _refresh(self, namespace: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each item's status from its GroupVolumeSnapshot; items whose group is gone drop out."""
        fresh = []
        for entry in entries:
            group = self.cluster.group(namespace, str(entry.get("name")))  # cache, then one GET
            if group is None:
                continue
            state = objects.text(group, "status", "status") or "Pending"
            updated = {**entry, "status": state}
            if state in (SUCCESSFUL, FAILED) and not entry.get("finishTimestamp"):
                updated["finishTimestamp"] = rfc3339(self.now())
            fresh.append(updated)
        return fresh

    def _retain(self, schedule: Mapping[str, Any], entries: list[dict[str, Any]], retain: int) -> list[dict]:
        """Delete the oldest Successful items beyond `retain` (and Failed ones beyond it too)."""
        namespace = objects.namespace(schedule)
        doomed: set[str] = set()
        for state in (SUCCESSFUL, FAILED):
            done = sorted(
                (e for e in entries if e.get("status") == state), key=lambda e: e.get("creationTimestamp", "")
            )
            doomed |= {str(e["name"]) for e in done[: max(0, len(done) - retain)]}
        for group_name in sorted(doomed):
            self.cluster.delete_group(namespace, group_name)
            log.info("retention deleted a group snapshot", extra={"group": group_name})
        return [e for e in entries if e.get("name") not in doomed]
