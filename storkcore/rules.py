"""The Rule model (SPEC §7.1): its group, the `${WAIT_CMD}` placeholder and its checks, used by the
validating webhook (admission) and the controller (before running a rule).

Every problem names its field path, as `kubectl` users expect:
`rules[0].actions[1].value: must not be empty`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RULE_GROUP = "stork.libopenstorage.org"
WAIT_PLACEHOLDER = "${WAIT_CMD}"


def rule_problems(rule: Any) -> list[str]:
    if not isinstance(rule, Mapping):
        return ["object: must be an object"]
    items = rule.get("rules")
    if not isinstance(items, list) or not items:
        return ["rules: must be a non-empty list"]
    problems: list[str] = []
    for i, item in enumerate(items):
        problems += _item_problems(f"rules[{i}]", item)
    return problems


def _item_problems(path: str, item: Any) -> list[str]:
    if not isinstance(item, Mapping):
        return [f"{path}: must be an object"]
    problems: list[str] = []
    selector = item.get("podSelector")
    if not isinstance(selector, Mapping) or not selector:
        problems.append(f"{path}.podSelector: must be a non-empty map of labels")
    elif not all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items()):
        problems.append(f"{path}.podSelector: labels and values must be strings")
    if "container" in item and item["container"] is not None and not isinstance(item["container"], str):
        problems.append(f"{path}.container: must be a string")
    actions = item.get("actions")
    if not isinstance(actions, list) or not actions:
        return [*problems, f"{path}.actions: must be a non-empty list"]
    for j, action in enumerate(actions):
        problems += _action_problems(f"{path}.actions[{j}]", action)
    return problems


def _action_problems(path: str, action: Any) -> list[str]:
    if not isinstance(action, Mapping):
        return [f"{path}: must be an object"]
    problems: list[str] = []
    if action.get("type") != "command":
        problems.append(f'{path}.type: must be "command"')
    value = action.get("value")
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{path}.value: must be a non-empty command")
    for flag in ("background", "runInSinglePod"):
        if flag in action and not isinstance(action[flag], bool):
            problems.append(f"{path}.{flag}: must be true or false")
    if action.get("background") is True and isinstance(value, str) and WAIT_PLACEHOLDER not in value:
        problems.append(f"{path}.value: a background action must contain {WAIT_PLACEHOLDER}")
    return problems
