"""The filter algorithm (SPEC §5, "Filter"): which nodes can host a pod's storage.

Steps, in the order the spec gives them:
1. a pod without driver volumes: every node is kept;
2. a missing, restoring, or unbound (non-WaitForFirstConsumer) claim: every node fails;
3. the driver cannot answer: every node is kept (fail open);
4. nodes annotated `operator.libopenstorage.org/unschedulable` fail;
5. a node must be a driver node that is Online or StorageDown;
6. a volume whose replicas are all off Online nodes: every node fails;
7. `preferLocalNodeOnly`: only nodes holding a replica of every (normal) volume;
8. anti-hyperconverged `preferRemoteNodeOnly` volumes exclude their replica nodes;
9. a Windows volume skips the driver rules (steps 5 to 8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from operator import not_

from storkcore import annotations as ann
from storkcore import objects
from storkcore.model import NodeStatus, StorageNode, Volume
from storkcore.nodetable import Candidate, NodeTable
from storkcore.pods import PodStorage, anti_hyperconverged, wants_remote_only


@dataclass
class FilterOutcome:
    kept: list[int] = field(default_factory=list)  # indexes into the candidates
    unresolvable: dict[str, str] = field(default_factory=dict)  # node -> reason
    transient: dict[str, str] = field(default_factory=dict)  # node -> reason
    pod_reason: str = ""  # set when one reason fails every node
    fail_open: str = ""  # set when nodes were kept because the driver could not answer


def filter_candidates(
    index_by_id: Mapping[str, StorageNode],
    pod: dict,
    storage: PodStorage,
    candidates: list[Candidate],
) -> FilterOutcome:
    outcome = _same_for_every_node(index_by_id, storage, lambda: [c.name for c in candidates], len(candidates))
    if outcome is not None:
        return outcome
    outcome = FilterOutcome()
    rules = _NodeRules.of(storage.volumes, pod)
    kept, unresolvable, transient = outcome.kept, outcome.unresolvable, outcome.transient
    for i, candidate in enumerate(candidates):
        # Step 4; steps 5, 7 and 8 unless a Windows volume skips driver rules (step 9).
        if storage.windows:
            reason = candidate.node_reason
        else:
            reason = candidate.static_reason or (rules.active and rules.reason(candidate.storage))
        if not reason:
            kept.append(i)
        elif candidate.node is None:
            transient[candidate.name] = reason  # may be there on the next try
        else:
            unresolvable[candidate.name] = reason
    return outcome


def filter_names(
    index_by_id: Mapping[str, StorageNode], pod: dict, storage: PodStorage, names: list[str], table: NodeTable
) -> FilterOutcome | None:
    """NodeNames mode when only each node's own state counts (steps 4 and 5): the same outcome as
    `filter_candidates`, from the node table's reasons in one C-level lookup per name.

    None when a per-pod rule applies (steps 7 to 9) or a name is not in the table: filter
    candidates then.
    """
    outcome = _same_for_every_node(index_by_id, storage, lambda: names, len(names))
    if outcome is not None:
        return outcome
    if storage.windows or _NodeRules.of(storage.volumes, pod).active:
        return None
    reasons = table.static_reasons(names)
    distinct = set(reasons)  # a few strings, hashed once each
    if None in distinct:
        return None
    outcome = FilterOutcome()
    if distinct == {""}:  # the usual case: every node may host the storage
        outcome.kept = list(range(len(names)))
        return outcome
    outcome.kept = list(compress(range(len(names)), map(not_, reasons)))
    outcome.unresolvable = {names[i]: reasons[i] for i in compress(range(len(names)), reasons)}  # type: ignore[misc]
    return outcome


def _same_for_every_node(
    index_by_id: Mapping[str, StorageNode], storage: PodStorage, names: Callable[[], list[str]], count: int
) -> FilterOutcome | None:
    """Steps 1, 2, 3 and 6: the outcome when the pod alone decides it, else None."""
    outcome = FilterOutcome()
    if not storage.concerns_driver:  # step 1
        outcome.kept = list(range(count))
        return outcome
    pod_reason = storage.blocked or _no_online_replica(index_by_id, storage.volumes)  # steps 2, 6
    if storage.blocked:
        return _fail_all(outcome, names(), pod_reason)
    if storage.driver_error:  # step 3
        outcome.kept = list(range(count))
        outcome.fail_open = storage.driver_error
        return outcome
    if pod_reason:
        return _fail_all(outcome, names(), pod_reason)
    return None


class _NodeRules:
    """Steps 5, 7 and 8 for one pod, prepared once and applied to every node."""

    def __init__(self, must_hold: list[Volume], must_not_hold: list[Volume]) -> None:
        self.must_hold = [(v, frozenset(v.data_nodes)) for v in must_hold]
        self.must_not_hold = [(v, frozenset(v.data_nodes)) for v in must_not_hold]
        self.active = bool(self.must_hold or self.must_not_hold)

    @classmethod
    def of(cls, volumes: list[Volume], pod: dict) -> _NodeRules:
        local_only = ann.is_true(objects.annotations(pod).get(ann.PREFER_LOCAL_NODE_ONLY))
        return cls(
            must_hold=[v for v in volumes if not anti_hyperconverged(v)] if local_only else [],
            must_not_hold=[v for v in volumes if wants_remote_only(v)],
        )

    def reason(self, storage: StorageNode | None) -> str:
        if storage is None:
            return ""
        sid = storage.storage_id
        for volume, holders in self.must_hold:  # step 7
            if sid not in holders:
                return f"node holds no replica of volume {volume.id} (preferLocalNodeOnly)"
        for volume, holders in self.must_not_hold:  # step 8
            if sid in holders:
                return f"node holds a replica of volume {volume.id}, which prefers remote nodes only"
        return ""


def _fail_all(outcome: FilterOutcome, names: list[str], reason: str) -> FilterOutcome:
    outcome.pod_reason = reason
    outcome.unresolvable = dict.fromkeys(names, reason)
    return outcome


def _no_online_replica(index_by_id: Mapping[str, StorageNode], volumes: list[Volume]) -> str:
    for volume in volumes:
        if volume.data_nodes and not any(
            getattr(index_by_id.get(n), "status", None) == NodeStatus.ONLINE for n in volume.data_nodes
        ):
            return f"no replica of volume {volume.id} (PVC {volume.claim}) is on an Online node"
    return ""
