"""The scheduler extender wire protocol.

kube-scheduler sends `ExtenderArgs` with PascalCase keys; they are read
case-insensitively. Requests carry either full `Nodes` or only `NodeNames`
(when the extender is `nodeCacheCapable`), and answers use the same mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


class ProtocolError(ValueError):
    """The body is not an ExtenderArgs this extender can read (HTTP 400)."""


@dataclass
class ExtenderArgs:
    pod: dict[str, Any]
    nodes: list[dict[str, Any]] | None  # full Node objects, in Nodes mode
    node_names: list[str] | None  # in NodeNames mode

    @property
    def names(self) -> list[str]:
        if self.node_names is not None:
            return self.node_names
        return [n["metadata"]["name"] for n in self.nodes or []]


def _lower_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in obj.items() if isinstance(k, str)}


def parse_args(body: bytes) -> ExtenderArgs:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ProtocolError(f"body is not JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("body must be a JSON object (ExtenderArgs)")
    args = _lower_keys(raw)
    pod = args.get("pod")
    if not isinstance(pod, dict):
        raise ProtocolError("Pod is missing or not an object")
    _check_pod(pod)
    nodes = _parse_nodes(args.get("nodes"))
    names = _parse_node_names(args.get("nodenames"))
    if nodes is None and names is None:
        raise ProtocolError("neither Nodes nor NodeNames is given")
    # Prefer names when both come: the extender resolves them from its cache.
    return ExtenderArgs(pod=pod, nodes=None if names is not None else nodes, node_names=names)


def _check_pod(pod: dict[str, Any]) -> None:
    for section in ("metadata", "spec"):
        if section in pod and pod[section] is not None and not isinstance(pod[section], dict):
            raise ProtocolError(f"Pod.{section} must be an object")
    metadata = pod.get("metadata") or {}
    for key in ("name", "namespace", "uid"):
        if key in metadata and metadata[key] is not None and not isinstance(metadata[key], str):
            raise ProtocolError(f"Pod.metadata.{key} must be a string")
    for key in ("annotations", "labels"):
        if key in metadata and metadata[key] is not None and not isinstance(metadata[key], dict):
            raise ProtocolError(f"Pod.metadata.{key} must be an object")
    volumes = (pod.get("spec") or {}).get("volumes")
    if volumes is not None and not isinstance(volumes, list):
        raise ProtocolError("Pod.spec.volumes must be a list")


def _parse_nodes(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("Nodes must be an object with items")
    found = _lower_keys(value).get("items")
    if found is None:
        return []
    if not isinstance(found, list):
        raise ProtocolError("Nodes.items must be a list")
    for i, node in enumerate(found):
        node_name = node.get("metadata", {}).get("name") if isinstance(node, dict) else None
        if not isinstance(node_name, str) or not isinstance(node.get("metadata"), dict):
            raise ProtocolError(f"Nodes.items[{i}] has no metadata.name")
    return found


def _parse_node_names(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not set(map(type, value)) <= {str}:
        raise ProtocolError("NodeNames must be a list of strings")
    return value


def filter_result(
    args: ExtenderArgs,
    kept: list[int],
    unresolvable: Mapping[str, str],
    transient: Mapping[str, str] | None = None,
    error: str = "",
) -> bytes:
    """ExtenderFilterResult in the request's mode.

    Storage failures (`unresolvable`: preemption cannot help) go in both maps:
    schedulers from 1.21 read FailedAndUnresolvableNodes and let it win, older
    ones read only FailedNodes. `transient` failures go in FailedNodes only.
    """
    result: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": {**(transient or {}), **unresolvable},
        "FailedAndUnresolvableNodes": dict(unresolvable),
        "Error": error,
    }
    if args.node_names is not None:
        every = len(kept) == len(args.node_names)  # kept holds distinct indexes: all of them
        result["NodeNames"] = args.node_names if every else [args.node_names[i] for i in kept]
    else:
        nodes = args.nodes or []
        result["Nodes"] = {"items": [nodes[i] for i in kept]}
    return orjson.dumps(result)


def priority_list(names: list[str], scores: list[int]) -> bytes:
    return orjson.dumps([{"Host": n, "Score": s} for n, s in zip(names, scores, strict=True)])


# Bytes a JSON string cannot hold as they are (orjson escapes them; nothing else).
_NEEDS_ESCAPE = bytes(range(0x20)) + b'"\\'
_SCORE_THEN_HOST = [f'","Score":{score}}},{{"Host":"' for score in range(4096)]


def encoded_priority_list(names: list[str], scores: list[int]) -> bytes:
    """The bytes `priority_list` gives, joined from the names and ready-made pieces.

    About a third of the time of building and encoding thousands of dicts (bench/README.md);
    names that JSON must escape, and scores outside the table, take the plain way.
    """
    if len(names) != len(scores):
        raise ValueError("one score per node")
    if not scores or min(scores) < 0 or max(scores) >= len(_SCORE_THEN_HOST) or _needs_escape(",".join(names).encode()):
        return priority_list(names, scores)
    parts: list[str] = [""] * (2 * len(scores))
    parts[0::2] = names
    parts[1::2] = map(_SCORE_THEN_HOST.__getitem__, scores)
    parts[-1] = parts[-1][: -len(',{"Host":"')]  # the last entry closes the list instead
    return ('[{"Host":"' + "".join(parts) + "]").encode()


def _needs_escape(text: bytes) -> bool:
    return len(text.translate(None, _NEEDS_ESCAPE)) != len(text)  # in C: a regex took 7x as long
