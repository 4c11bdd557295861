"""Safe accessors for Kubernetes objects kept as wire-format dicts.

Objects come from the API (our caches) or from request bodies (the scheduler,
the apiserver); either may hold a field of an unexpected type. These helpers
return a default instead of raising, so one odd field never crashes a request.
"""

from collections.abc import Mapping
from typing import Any

Obj = Mapping[str, Any]
EMPTY: Mapping[str, Any] = {}


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    """Walk nested mappings; the default when a step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return default
        obj = obj.get(key)
        if obj is None:
            return default
    return obj


def mapping(obj: Any, *path: str) -> Mapping[str, Any]:
    value = dig(obj, *path)
    return value if isinstance(value, Mapping) else EMPTY


def items(obj: Any, *path: str) -> list[Any]:
    value = dig(obj, *path)
    return value if isinstance(value, list) else []


def text(obj: Any, *path: str) -> str:
    value = dig(obj, *path)
    return value if isinstance(value, str) else ""


def name(obj: Any) -> str:
    return text(obj, "metadata", "name")


def namespace(obj: Any) -> str:
    return text(obj, "metadata", "namespace")


def labels(obj: Any) -> Mapping[str, Any]:
    return mapping(obj, "metadata", "labels")


def annotations(obj: Any) -> Mapping[str, Any]:
    return mapping(obj, "metadata", "annotations")


def key(obj: Any) -> tuple[str, str]:
    """The cache key of an object: (namespace, name); namespace is '' for cluster objects."""
    return namespace(obj), name(obj)


def condition_status(obj: Any, kind: str) -> str:
    """Status ('True', 'False', 'Unknown') of condition `kind` in status.conditions, or ''.

    Accepts the list form of core objects and of Longhorn v1beta2, and the map
    form (type -> condition) of older Longhorn objects.
    """
    conditions = dig(obj, "status", "conditions")
    if isinstance(conditions, Mapping):
        conditions = list(conditions.values())
    if not isinstance(conditions, list):
        return ""
    for cond in conditions:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            status = cond.get("status")
            return status if isinstance(status, str) else ""
    return ""


def node_is_ready(node: Any) -> bool:
    return condition_status(node, "Ready") == "True"


def node_addresses(node: Any, kind: str) -> list[str]:
    return [
        a["address"]
        for a in items(node, "status", "addresses")
        if isinstance(a, Mapping) and a.get("type") == kind and isinstance(a.get("address"), str)
    ]
