"""Node selectors as PersistentVolumes use them (`spec.nodeAffinity.required`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storkcore import objects


def node_matches_selector(node: Any, selector: Any) -> bool:
    """True when the node satisfies any of the selector's terms (terms are ORed).

    A selector without terms matches nothing, as in the API.
    """
    terms = objects.items(selector, "nodeSelectorTerms")
    return any(_term_matches(node, term) for term in terms if isinstance(term, Mapping))


def _term_matches(node: Any, term: Mapping[str, Any]) -> bool:
    expressions = objects.items(term, "matchExpressions")
    fields = objects.items(term, "matchFields")
    if not expressions and not fields:
        return False  # an empty term selects no node
    node_labels = objects.labels(node)
    node_fields = {"metadata.name": objects.name(node)}
    return all(_requirement_holds(node_labels, r) for r in expressions) and all(
        _requirement_holds(node_fields, r) for r in fields
    )


def _requirement_holds(values: Mapping[str, Any], requirement: Any) -> bool:
    if not isinstance(requirement, Mapping):
        return False
    key = requirement.get("key")
    operator = requirement.get("operator")
    wanted = [v for v in objects.items(requirement, "values") if isinstance(v, str)]
    present = isinstance(key, str) and key in values
    value = values.get(key) if present else None
    match operator:
        case "In":
            return present and value in wanted
        case "NotIn":
            return not present or value not in wanted
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
        case "Gt" | "Lt":
            return present and _compare(value, wanted, operator)
    return False


def _compare(value: Any, wanted: list[str], operator: str) -> bool:
    if len(wanted) != 1:
        return False
    try:
        have, limit = int(value), int(wanted[0])
    except (TypeError, ValueError):
        return False
    return have > limit if operator == "Gt" else have < limit


LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_selector_matches(labels: Mapping[str, Any], selector: Any) -> bool:
    """A `metav1.LabelSelector` (matchLabels AND matchExpressions); an empty one selects everything."""
    if not isinstance(selector, Mapping):
        return False
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in wanted.items()):
        return False
    return all(_requirement_holds(labels, r) for r in objects.items(selector, "matchExpressions"))


def label_selector_problems(path: str, selector: Any) -> list[str]:
    """Why a label selector is malformed, each problem naming its field."""
    if not isinstance(selector, Mapping):
        return [f"{path}: must be a label selector (matchLabels, matchExpressions)"]
    problems: list[str] = []
    unknown = sorted(set(selector) - {"matchLabels", "matchExpressions"})
    if unknown:
        problems.append(f"{path}: unknown field {unknown[0]!r} (use matchLabels or matchExpressions)")
    match_labels = selector.get("matchLabels")
    if match_labels is not None and (
        not isinstance(match_labels, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in match_labels.items())
    ):
        problems.append(f"{path}.matchLabels: must map label keys to string values")
    expressions = selector.get("matchExpressions")
    if expressions is not None and not isinstance(expressions, list):
        return [*problems, f"{path}.matchExpressions: must be a list"]
    for i, requirement in enumerate(expressions or []):
        problems += _requirement_problems(f"{path}.matchExpressions[{i}]", requirement)
    if not match_labels and not expressions:
        problems.append(f"{path}: must select something (matchLabels or matchExpressions)")
    return problems


def _requirement_problems(path: str, requirement: Any) -> list[str]:
    if not isinstance(requirement, Mapping):
        return [f"{path}: must be an object"]
    key, operator, values = requirement.get("key"), requirement.get("operator"), requirement.get("values")
    problems = [] if isinstance(key, str) and key else [f"{path}.key: must be a non-empty string"]
    if operator not in LABEL_OPERATORS:
        return [*problems, f"{path}.operator: must be one of {', '.join(LABEL_OPERATORS)}"]
    has_values = isinstance(values, list) and len(values) > 0
    if operator in ("In", "NotIn") and not has_values:
        problems.append(f"{path}.values: must be a non-empty list for {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        problems.append(f"{path}.values: must be empty for {operator}")
    if has_values and not all(isinstance(v, str) for v in values):
        problems.append(f"{path}.values: must be strings")
    return problems
