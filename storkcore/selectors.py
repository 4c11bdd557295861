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
