"""Validation of SchedulePolicy and VolumeSnapshotSchedule (SPEC §7.3), naming each field."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.schedules import POLICY_TYPES, parse_time, parse_weekday
from storkcore.selectors import label_selector_problems
from webhook.snapshots import DNS_SUBDOMAIN, option_problems, option_warnings

PolicyLookup = Callable[[str], Mapping[str, Any] | None]  # name -> SchedulePolicy, None if absent or unknown


def schedule_policy_problems(policy: Any) -> list[str]:
    kinds = policy.get("policy") if isinstance(policy, Mapping) else None
    if not isinstance(kinds, Mapping) or not any(kinds.get(k) for k in POLICY_TYPES):
        return ["policy: must have at least one of interval, daily, weekly, monthly"]
    problems = [
        f"policy.{k}: unknown policy type (interval, daily, weekly, monthly)" for k in kinds if k not in POLICY_TYPES
    ]
    for kind in POLICY_TYPES:
        spec = kinds.get(kind)
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"policy.{kind}: must be an object")
            continue
        problems += _type_problems(f"policy.{kind}", kind, spec)
    return problems


def _type_problems(path: str, kind: str, spec: Mapping[str, Any]) -> list[str]:
    problems = []
    retain = spec.get("retain")
    if retain is not None and (not _whole(retain) or retain < 0):
        problems.append(f"{path}.retain: must be 1 or more (0: the default)")
    if kind == "interval":
        minutes = spec.get("intervalMinutes")
        if not _whole(minutes) or minutes < 1:
            problems.append(f"{path}.intervalMinutes: must be 1 or more")
        return problems
    try:
        parse_time(spec.get("time"))
    except ValueError:
        problems.append(f"{path}.time: must be a time like 10:14PM, got {spec.get('time')!r}")
    if kind == "weekly":
        try:
            parse_weekday(spec.get("day"))
        except ValueError:
            problems.append(f"{path}.day: must be a weekday (Monday .. Sunday or Mon .. Sun), got {spec.get('day')!r}")
    if kind == "monthly":
        day = spec.get("date")
        if not _whole(day) or not 1 <= day <= 31:
            problems.append(f"{path}.date: must be a day of the month, 1-31, got {day!r}")
    return problems


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def snapshot_schedule_problems(schedule: Any, lookup_policy: PolicyLookup) -> list[str]:
    spec = schedule.get("spec") if isinstance(schedule, Mapping) else None
    if not isinstance(spec, Mapping):
        return ["spec: must be an object"]
    problems = []
    policy = spec.get("schedulePolicyName")
    if not isinstance(policy, str) or not DNS_SUBDOMAIN.match(policy):
        problems.append("spec.schedulePolicyName: must name a SchedulePolicy")
    elif lookup_policy(policy) is None:
        problems.append(f"spec.schedulePolicyName: SchedulePolicy {policy} does not exist")
    if spec.get("reclaimPolicy") not in (None, "", "Delete", "Retain"):
        problems.append("spec.reclaimPolicy: must be Delete or Retain")
    if spec.get("suspend") is not None and not isinstance(spec["suspend"], bool):
        problems.append("spec.suspend: must be true or false")
    for field in ("preExecRule", "postExecRule"):
        value = spec.get(field)
        if value not in (None, "") and (not isinstance(value, str) or not DNS_SUBDOMAIN.match(value)):
            problems.append(f"spec.{field}: must be the name of a Rule")
    template = spec.get("template")
    template_spec = template.get("spec") if isinstance(template, Mapping) else None
    if not isinstance(template_spec, Mapping):
        return [*problems, "spec.template.spec: must say persistentVolumeClaimName or pvcSelector"]
    problems += option_problems("spec.template.spec.options", template_spec.get("options"))
    # Upstream's client writes an unset claim name as "" (and snapshotDataName, which is unused).
    claim, selector = template_spec.get("persistentVolumeClaimName") or None, template_spec.get("pvcSelector")
    if (claim is None) == (selector is None):
        problems.append("spec.template.spec: needs exactly one of persistentVolumeClaimName and pvcSelector")
    elif claim is not None and (not isinstance(claim, str) or not DNS_SUBDOMAIN.match(claim)):
        problems.append("spec.template.spec.persistentVolumeClaimName: must be a PVC name")
    elif selector is not None:
        problems += label_selector_problems("spec.template.spec.pvcSelector", selector)
    return problems


def schedule_policy_warnings(policy: Any) -> list[str]:
    """Upstream fields that are kept and have no effect here."""
    kinds = policy.get("policy") if isinstance(policy, Mapping) else None
    found: list[str] = []
    for kind in POLICY_TYPES:
        spec = kinds.get(kind) if isinstance(kinds, Mapping) else None
        if not isinstance(spec, Mapping):
            continue
        if spec.get("options"):
            found.append(f"policy.{kind}.options: kept, has no effect in stork-py")
        if spec.get("forceFullSnapshotDay"):
            found.append(f"policy.{kind}.forceFullSnapshotDay: kept, has no effect (stork-py takes CSI snapshots)")
    return found


def snapshot_schedule_warnings(schedule: Any) -> list[str]:
    template = schedule.get("spec", {}).get("template") if isinstance(schedule, Mapping) else None
    template_spec = template.get("spec") if isinstance(template, Mapping) else None
    if not isinstance(template_spec, Mapping):
        return []
    return option_warnings("spec.template.spec.options", template_spec.get("options"))
