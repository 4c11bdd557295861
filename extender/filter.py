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

from collections.abc import Mapping
from dataclasses import dataclass, field

from extender.candidates import Candidate
from storkcore import annotations as ann
from storkcore import objects
from storkcore.model import NodeStatus, StorageNode, Volume
from storkcore.pods import PodStorage, anti_hyperconverged, wants_remote_only


@dataclass
class FilterOutcome:
    kept: list[int] = field(default_factory=list)  # indexes into the candidates
    unresolvable: dict[str, str] = field(default_factory=dict)  # node -> reason
    transient: dict[str, str] = field(default_factory=dict)  # node -> reason
    pod_reason: str = ""  # set when one reason fails every node
    fail_open: str = ""  # set when nodes were kept because the driver could not answer


def filter_candidates(
    driver_name: str,
    index_by_id: Mapping[str, StorageNode],
    pod: dict,
    storage: PodStorage,
    candidates: list[Candidate],
) -> FilterOutcome:
    outcome = FilterOutcome()
    if not storage.uses_driver and not storage.blocked:  # step 1
        outcome.kept = list(range(len(candidates)))
        return outcome
    pod_reason = storage.blocked or _no_online_replica(index_by_id, storage.volumes)  # steps 2, 6
    if storage.blocked:
        return _fail_all(outcome, candidates, pod_reason)
    if storage.driver_error:  # step 3
        outcome.kept = list(range(len(candidates)))
        outcome.fail_open = storage.driver_error
        return outcome
    if pod_reason:
        return _fail_all(outcome, candidates, pod_reason)

    local_only = ann.is_true(objects.annotations(pod).get(ann.PREFER_LOCAL_NODE_ONLY))
    for i, candidate in enumerate(candidates):
        if candidate.node is None:
            outcome.transient[candidate.name] = "node not found"
            continue
        reason = _node_unschedulable(candidate) or (
            "" if storage.windows else _storage_reason(driver_name, candidate, storage.volumes, local_only)
        )
        if reason:
            outcome.unresolvable[candidate.name] = reason
        else:
            outcome.kept.append(i)
    return outcome


def _fail_all(outcome: FilterOutcome, candidates: list[Candidate], reason: str) -> FilterOutcome:
    outcome.pod_reason = reason
    outcome.unresolvable = {c.name: reason for c in candidates}
    return outcome


def _no_online_replica(index_by_id: Mapping[str, StorageNode], volumes: list[Volume]) -> str:
    for volume in volumes:
        if volume.data_nodes and not any(
            getattr(index_by_id.get(n), "status", None) == NodeStatus.ONLINE for n in volume.data_nodes
        ):
            return f"no replica of volume {volume.id} (PVC {volume.claim}) is on an Online node"
    return ""


def _node_unschedulable(candidate: Candidate) -> str:
    if ann.is_true(objects.annotations(candidate.node).get(ann.NODE_UNSCHEDULABLE)):
        return f"node is marked {ann.NODE_UNSCHEDULABLE}"
    return ""


def _storage_reason(driver_name: str, candidate: Candidate, volumes: list[Volume], local_only: bool) -> str:
    storage = candidate.storage
    if storage is None:  # step 5
        return f"node is not a {driver_name} storage node"
    if not storage.usable:
        return f"{driver_name} storage on node is {storage.status.value}"
    for volume in volumes:
        holds_replica = storage.storage_id in volume.data_nodes
        if local_only and not holds_replica and not anti_hyperconverged(volume):  # step 7
            return f"node holds no replica of volume {volume.id} (preferLocalNodeOnly)"
        if holds_replica and wants_remote_only(volume):  # step 8
            return f"node holds a replica of volume {volume.id}, which prefers remote nodes only"
    return ""
