"""Locality at scale (SPEC §5 "Locality at scale"): which nodes a pod is held to at admission.

Above 100 nodes kube-scheduler looks for feasible nodes only until it has a
sample, and offers the extender nothing else: a pod whose replica nodes are
not in the sample lands away from its data. A required node affinity that only
the replica nodes satisfy makes sampling unable to miss them, and the extender
then ranks a handful of names instead of hundreds.

That affinity is a hard constraint, so it is written only where a way back
exists and is likely not needed:
- the pod is owned by a controller that recreates it (not a DaemonSet, whose
  pods are pinned already) - or it is `preferLocalNodeOnly`, whose filter keeps
  only replica nodes anyway, so the constraint changes nothing of its meaning;
- the replica nodes are Online and could take the pod as far as cached state
  says (Ready, not cordoned, no taint it does not tolerate, its own node
  selector and required affinity);
- no claim of the pod is in its fallback window: when a constrained pod turns
  out unschedulable, the controller marks its claims and deletes the pod, and
  its replacement is admitted without the constraint (controller/locality.py).
Everything else fails open: the pod is admitted as before (schedulerName only).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storkcore import annotations as ann
from storkcore import objects
from storkcore.drivers.base import Driver
from storkcore.model import NodeStatus
from storkcore.nodetable import Candidate, NodeTable
from storkcore.pods import PodStorage, anti_hyperconverged, assess_pod, claim_names
from storkcore.selectors import node_matches_selector

PINNED_KINDS = frozenset({"DaemonSet"})  # their pods carry a node affinity for one node already
MAX_NODES = 32  # more replica nodes than this: the constraint would not narrow much; leave it


@dataclass(frozen=True)
class Locality:
    """The constraint for one pod: the Kubernetes nodes it is held to, or why there is none."""

    nodes: tuple[str, ...] = ()
    reason: str = ""  # why no constraint was written ("" when there is one)

    @property
    def constrained(self) -> bool:
        return bool(self.nodes)


def none(reason: str) -> Locality:
    return Locality(reason=reason)


def decide_locality(driver: Driver, table: NodeTable, pod: Any, namespace: str, now: datetime.datetime) -> Locality:
    """The replica nodes this pod may be held to (union over its volumes), or why none."""
    if not driver.cluster.synced():
        return none("storage state not loaded yet")
    local_only = ann.is_true(objects.annotations(pod).get(ann.PREFER_LOCAL_NODE_ONLY))
    why_not = _pod_excluded(pod, local_only)
    if why_not:
        return none(why_not)
    storage = assess_pod(driver, pod, namespace, cached_only=True)
    why_not = _storage_excluded(storage) or fallback_window(driver, pod, namespace, now)
    if why_not:
        return none(why_not)
    holders: dict[str, Candidate] = {}
    for volume in storage.volumes:
        if ann.is_true(volume.labels.get(ann.SKIP_SCHEDULER_SCORING)):
            continue
        for storage_id in volume.data_nodes:
            for candidate in table.nodes_of(storage_id):
                holders[candidate.name] = candidate
    if not holders:
        return none("no replica of the pod's volumes is on a known node yet")
    fitting = [c for c in holders.values() if not _node_excluded(c, pod)]
    if not fitting:
        return none("no replica node can take the pod (offline, cordoned, tainted, or outside its own affinity)")
    if len(fitting) > MAX_NODES:
        return none(f"replicas on {len(fitting)} nodes; a constraint would not narrow the search")
    return Locality(nodes=tuple(sorted(c.name for c in fitting)))


def _pod_excluded(pod: Any, local_only: bool) -> str:
    if ann.is_true(objects.annotations(pod).get(ann.DISABLE_HYPERCONVERGENCE)):
        return f"the pod asks for no locality ({ann.DISABLE_HYPERCONVERGENCE})"
    if objects.text(pod, "spec", "nodeName"):
        return "the pod names its node"
    if objects.items(pod, "spec", "topologySpreadConstraints"):
        # kube-scheduler computes spread only over the nodes a pod's affinity allows:
        # a constraint would change what the user's spread means.
        return "the pod has topologySpreadConstraints"
    if local_only:
        return ""
    owner = controller_of(pod)
    if owner is None:
        return "no controller owns the pod, so nothing would recreate it if its replica nodes cannot take it"
    if owner in PINNED_KINDS:
        return f"a {owner} pod is pinned to its node already"
    return ""


def _storage_excluded(storage: PodStorage) -> str:
    if storage.driver_error:
        return f"storage state unavailable: {storage.driver_error}"[:200]
    if storage.blocked:
        return storage.blocked
    if storage.windows:
        return "a Windows volume: driver placement rules do not apply"
    if any(anti_hyperconverged(v) for v in storage.volumes):
        return "a volume prefers remote nodes (anti-hyperconvergence)"
    if not storage.volumes:
        return "no bound volume of the driver yet"
    return ""


def _node_excluded(candidate: Candidate, pod: Any) -> str:
    """Why cached state says this replica node cannot take the pod ("" when it may)."""
    node = candidate.node
    if node is None or candidate.storage is None:
        return "unknown"
    if candidate.static_reason or candidate.storage.status != NodeStatus.ONLINE:
        return "storage not Online"
    if objects.mapping(node, "spec").get("unschedulable") is True:
        return "cordoned"
    if not _ready(node):
        return "not Ready"
    tolerations = [t for t in objects.items(pod, "spec", "tolerations") if isinstance(t, Mapping)]
    for taint in objects.items(node, "spec", "taints"):
        hard = isinstance(taint, Mapping) and taint.get("effect") in ("NoSchedule", "NoExecute")
        if hard and not any(tolerates(t, taint) for t in tolerations):
            return "tainted"
    if not _matches_own_constraints(node, pod):
        return "outside the pod's own node selector or affinity"
    return ""


def _ready(node: Any) -> bool:
    for condition in objects.items(node, "status", "conditions"):
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return True  # no conditions reported: nothing says it is not


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' toleration rules: an empty effect tolerates every effect, an empty key with
    `Exists` tolerates every taint, `Equal` (the default) also compares the value."""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")


def _matches_own_constraints(node: Any, pod: Any) -> bool:
    wanted = objects.mapping(pod, "spec", "nodeSelector")
    node_labels = objects.labels(node)
    if any(node_labels.get(k) != v for k, v in wanted.items()):
        return False
    required = objects.mapping(pod, *REQUIRED_PATH)
    return not required or node_matches_selector(node, required)


def controller_of(pod: Any) -> str | None:
    """The kind of the controller that owns the pod, None when no controller does."""
    for ref in objects.items(pod, "metadata", "ownerReferences"):
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return str(ref.get("kind") or "")
    return None


# -- the fallback window, kept on the claims ---------------------------------------


def fallback_window(driver: Driver, pod: Any, namespace: str, now: datetime.datetime) -> str:
    """Why the pod's claims are in their fallback window ("" when none is)."""
    for claim in claim_names(pod):
        pvc = driver.cluster.pvc(namespace, claim)  # cached: the pod's assessment read it
        until = parse_time(objects.annotations(pvc).get(ann.LOCALITY_FALLBACK_UNTIL)) if pvc else None
        if until is not None and now < until:
            return (
                f"a pod of PVC {claim} could not be placed on its replica nodes; "
                f"held to them again after {format_time(until)}"
            )
    return ""


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


# -- the constraint as a JSON Patch ---------------------------------------------------

REQUIRED_PATH = ("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")


def node_term(node: str, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A node selector term for one node by name, ANDed with a term of the pod's own.

    By `metadata.name` in `matchFields` (one value per requirement, as the API requires), so
    that kube-scheduler 1.27 and later narrow their search to these nodes before filtering
    (NodeAffinity's PreFilter), as they do for DaemonSet pods; 1.20 checks every node.
    """
    term = {k: list(v) for k, v in (base or {}).items() if k in ("matchExpressions", "matchFields") and v}
    term["matchFields"] = [*term.get("matchFields", []), {"key": "metadata.name", "operator": "In", "values": [node]}]
    return term


def constraint_patch(pod: Any, locality: Locality) -> list[dict[str, Any]]:
    """JSON Patch operations that hold the pod to `locality.nodes` and record them in an
    annotation. Terms are ORed and requirements within a term ANDed, so every non-empty term
    of the pod's own required node affinity becomes one term per replica node (an empty term
    selects no node and is dropped: it selected nothing before either)."""
    own = [t for t in objects.items(pod, *REQUIRED_PATH, "nodeSelectorTerms") if isinstance(t, Mapping)]
    own = [t for t in own if t.get("matchExpressions") or t.get("matchFields")]
    had_terms = bool(objects.items(pod, *REQUIRED_PATH, "nodeSelectorTerms"))
    if had_terms and not own:
        return annotation_ops(pod, {ann.LOCALITY: "not held to replica nodes: its own affinity selects no node"})
    terms = [node_term(node, base) for base in (own or [None]) for node in locality.nodes]
    required = {"nodeSelectorTerms": terms}
    depth = _existing_depth(pod)
    if depth < len(REQUIRED_PATH):
        value: Any = required
        for key in reversed(REQUIRED_PATH[depth + 1 :]):
            value = {key: value}
        ops = [{"op": "add", "path": "/" + "/".join(REQUIRED_PATH[: depth + 1]), "value": value}]
    else:
        ops = [{"op": "replace", "path": "/" + "/".join(REQUIRED_PATH), "value": required}]
    return ops + annotation_ops(pod, {ann.REPLICA_NODES: ",".join(locality.nodes)})


def _existing_depth(pod: Any) -> int:
    """How many levels of spec.affinity.nodeAffinity.required... the pod has (spec counts 1)."""
    current: Any = pod
    for depth, key in enumerate(REQUIRED_PATH):
        if not isinstance(current, Mapping) or not isinstance(current.get(key), Mapping):
            return depth
        current = current[key]
    return len(REQUIRED_PATH)


def annotation_ops(pod: Any, values: Mapping[str, str]) -> list[dict[str, Any]]:
    if not isinstance(objects.mapping(pod, "metadata").get("annotations"), Mapping):
        return [{"op": "add", "path": "/metadata/annotations", "value": dict(values)}]
    return [
        {"op": "add", "path": "/metadata/annotations/" + _escape(key), "value": value} for key, value in values.items()
    ]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def held_nodes(pod: Any) -> list[str]:
    """The nodes a pod was held to at admission (from its annotation)."""
    value = objects.annotations(pod).get(ann.REPLICA_NODES)
    return [n for n in value.split(",") if n] if isinstance(value, str) else []
