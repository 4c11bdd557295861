"""Validation of GroupVolumeSnapshots, and the warning for CSI snapshots that carry rules.

A GroupVolumeSnapshot is denied when what it says cannot work: a malformed selector, rule
names that are not names, a post-rule with background actions (nothing would release them),
an option value upstream Stork refuses or one stork-py cannot honour (a Portworx cloud
snapshot). A Rule that does not exist yet is allowed: the controller waits for it in PreChecks.
Objects written by upstream's Go client carry every field, unset strings as `""`: an empty
name means "none", as upstream reads it. What is kept but has no effect gets a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from storkcore import objects
from storkcore.selectors import label_selector_problems
from storkcore.snapshots import POST_SNAPSHOT_RULE, PRE_SNAPSHOT_RULE

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a namespace's name
RuleLookup = Callable[[str, str], Mapping[str, Any] | None]  # (namespace, name) -> Rule or None


def group_snapshot_problems(group: Any, namespace: str, lookup_rule: RuleLookup) -> list[str]:
    spec = objects.dig(group, "spec")
    if not isinstance(spec, Mapping):
        return ["spec: must be an object"]
    names = spec.get("pvcNames")
    problems: list[str] = []
    if not _names_or_none(names, DNS_SUBDOMAIN):
        problems.append("spec.pvcNames: must be a list of PVC names")
    if spec.get("pvcSelector") is not None or not names:
        problems += label_selector_problems("spec.pvcSelector", spec.get("pvcSelector"))
    for field in ("preExecRule", "postExecRule", "volumeSnapshotClassName"):
        value = spec.get(field)
        if value not in (None, "") and (not isinstance(value, str) or not DNS_SUBDOMAIN.match(value)):
            problems.append(f"spec.{field}: must be the name of a {'Rule' if 'Rule' in field else 'class'}")
    problems += option_problems("spec.options", spec.get("options"))
    if not _names_or_none(spec.get("restoreNamespaces"), DNS_LABEL):
        problems.append("spec.restoreNamespaces: must be a list of namespace names")
    retries = spec.get("maxRetries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
        problems.append("spec.maxRetries: must be a whole number, 0 or more")
    post = spec.get("postExecRule")
    if isinstance(post, str) and DNS_SUBDOMAIN.match(post):
        rule = lookup_rule(namespace, post)
        for i, item in enumerate(objects.items(rule, "rules")):
            for j, action in enumerate(objects.items(item, "actions")):
                if isinstance(action, Mapping) and action.get("background") is True:
                    problems.append(
                        f"spec.postExecRule: Rule {post} has a background action (rules[{i}].actions[{j}]); "
                        "only a pre-rule may hold the application"
                    )
    return problems


def _names_or_none(value: Any, pattern: re.Pattern[str]) -> bool:
    """Absent, or a list of names that match `pattern`."""
    return value is None or (isinstance(value, list) and all(isinstance(n, str) and pattern.match(n) for n in value))


# -- options (upstream passes them to the storage driver) -------------------------------------

SNAPSHOT_TYPE_OPTION = "portworx/snapshot-type"
SNAPSHOT_TYPES = ("local", "cloud")


def option_problems(path: str, options: Any) -> list[str]:
    """Option values upstream refuses, and the ones stork-py cannot honour."""
    if options is None:
        return []
    if not isinstance(options, Mapping) or not all(isinstance(v, str) for v in options.values()):
        return [f"{path}: must be a map of strings"]
    kind = options.get(SNAPSHOT_TYPE_OPTION)
    if kind in (None, "", "local"):
        return []
    if kind == "cloud":
        return [
            f"{path}.{SNAPSHOT_TYPE_OPTION}: cloud snapshots (uploaded to an object store) are not supported by "
            "stork-py; use local, which is a CSI snapshot"
        ]
    return [f"{path}.{SNAPSHOT_TYPE_OPTION}: must be local or cloud, got {kind!r}"]


def option_warnings(path: str, options: Any) -> list[str]:
    """What an accepted option means here: `local` is a CSI snapshot; every other key is kept
    and does nothing."""
    if not isinstance(options, Mapping):
        return []
    found = []
    if options.get(SNAPSHOT_TYPE_OPTION) == "local":
        found.append(f"{path}.{SNAPSHOT_TYPE_OPTION}: local is taken as a CSI snapshot of each volume")
    found += [f"{path}.{key}: kept, has no effect in stork-py" for key in options if key != SNAPSHOT_TYPE_OPTION]
    return found


def group_snapshot_warnings(group: Any) -> list[str]:
    return option_warnings("spec.options", objects.mapping(group, "spec").get("options"))


def volume_snapshot_warnings(snapshot: Any) -> list[str]:
    notes = objects.annotations(snapshot)
    used = [key for key in (PRE_SNAPSHOT_RULE, POST_SNAPSHOT_RULE) if notes.get(key)]
    if not used:
        return []
    # Warnings should stay short (kubectl shows them whole); the rule keys are in the annotations.
    return [
        "CSI cuts this snapshot at once: its snapshot-rule annotations cannot hold the app; use a GroupVolumeSnapshot"
    ]
