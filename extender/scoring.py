"""Node scores for `POST /prioritize` (SPEC §5, "Prioritize"), stork-compatible.

Per volume, a node scores its best single match: it holds a replica (100),
shares a rack (50), a zone (25) or a region (10) with a replica node. A
StorageDown node cannot serve a replica locally (its own replica counts as
rack-level) and its scores are halved; Offline and Degraded nodes have no
locality at all. Volume scores are summed; anti-hyperconverged volumes then set
their replica nodes to 5 and add 100 to every other Online node; last, a total
of 0 becomes 5 so that every storage node outranks nodes the driver does not
know (0). A pod without driver volumes gets 5 everywhere. These are upstream
Stork's numbers exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

from storkcore import annotations as ann
from storkcore import objects
from storkcore.model import NodeStatus, StorageNode, Topology, Volume
from storkcore.nodetable import NOWHERE, Candidate, NodeTable, Place
from storkcore.pods import PodStorage, anti_hyperconverged

REPLICA, RACK, ZONE, REGION = 100, 50, 25, 10
POINTS = {"replica": REPLICA, "rack": RACK, "zone": ZONE, "region": REGION}
FLOOR = 5  # a storage node with no locality still beats a non-storage node
UNKNOWN = 0
REMOTE_BONUS = 100  # anti-hyperconvergence: every Online non-replica node
MAX_EXTENDER_PRIORITY = 10  # kube-scheduler's range for extender scores

_LOCALITY = (NodeStatus.ONLINE, NodeStatus.STORAGE_DOWN)


LocalityKeys = tuple[str | None, str | None, str | None]  # rack, zone, region


@lru_cache(maxsize=4096)  # a few per cluster: one per distinct topology
def locality_keys(topology: Topology) -> LocalityKeys:
    return topology.rack_key, topology.zone_key, topology.region_key


@dataclass(frozen=True)
class Locality:
    """Where one volume's data is, as seen from any node."""

    replicas: frozenset[str]  # storage ids of replica nodes that can serve
    local_replicas: frozenset[str]  # of those, the Online ones (full replica score)
    racks: frozenset[str]
    zones: frozenset[str]
    regions: frozenset[str]

    @classmethod
    def of(cls, volume: Volume, index_by_id: Mapping[str, StorageNode]) -> Locality:
        serving = [index_by_id[n] for n in volume.data_nodes if n in index_by_id and index_by_id[n].status in _LOCALITY]
        return cls(
            replicas=frozenset(n.storage_id for n in serving),
            local_replicas=frozenset(n.storage_id for n in serving if n.status == NodeStatus.ONLINE),
            racks=frozenset(k for n in serving if (k := n.topology.rack_key)),
            zones=frozenset(k for n in serving if (k := n.topology.zone_key)),
            regions=frozenset(k for n in serving if (k := n.topology.region_key)),
        )

    def match(self, storage_id: str, status: NodeStatus, keys: LocalityKeys) -> tuple[str, int]:
        """The best match ("replica", "rack", "zone", "region" or "") and its points."""
        if status not in _LOCALITY:
            return "", 0
        rack_key, zone_key, region_key = keys
        if storage_id in self.local_replicas:
            best = "replica"
        elif storage_id in self.replicas or rack_key in self.racks:
            best = "rack"
        elif zone_key in self.zones:
            best = "zone"
        elif region_key in self.regions:
            best = "region"
        else:
            return "", 0
        points = POINTS[best]
        return best, points // 2 if status == NodeStatus.STORAGE_DOWN else points


def score_candidates(
    pod: Mapping, storage: PodStorage, index_by_id: Mapping[str, StorageNode], candidates: list[Candidate]
) -> list[int]:
    uniform = _uniform_score(pod, storage)
    if uniform is not None:
        return [uniform] * len(candidates)
    scored, remote = _scored_volumes(storage, index_by_id)
    holders = _holder_ids(scored, remote)
    keys = [c if c.storage_id in holders else c.place for c in candidates]
    return list(map(_Points(scored, remote).__getitem__, keys))


def score_names(
    pod: Mapping, storage: PodStorage, index_by_id: Mapping[str, StorageNode], names: list[str], table: NodeTable
) -> tuple[list[int], bool] | None:
    """NodeNames mode: the same scores as `score_candidates`, and whether a candidate holds a replica.

    Looks each name up once in the node table and never touches its candidate unless it
    holds a replica (at 5,000 names, half the time: bench/README.md). None when a name is
    not in the table (a node the watch has not brought yet): score candidates then.
    """
    data_nodes = {n for v in storage.volumes for n in v.data_nodes}  # every node whose score is its own
    keys, holders = table.places(names, data_nodes)
    distinct = set(keys)  # a few places and the replica holders, hashed by identity
    if None in distinct:  # a name not in the table
        return None
    near_data = not distinct.isdisjoint(holders)
    uniform = _uniform_score(pod, storage)
    if uniform is not None:
        return [uniform] * len(names), near_data
    return list(map(_Points(*_scored_volumes(storage, index_by_id)).__getitem__, keys)), near_data


def _uniform_score(pod: Mapping, storage: PodStorage) -> int | None:
    """The one score every node gets when locality does not count, else None."""
    if not storage.concerns_driver:
        return FLOOR  # no driver volumes: the same 5 everywhere, as upstream
    if not storage.uses_driver or storage.blocked or storage.driver_error:
        return UNKNOWN  # no opinion
    if ann.is_true(objects.annotations(pod).get(ann.DISABLE_HYPERCONVERGENCE)):
        return FLOOR
    return None


class _Points(dict):
    """Score by key, computed on first use: a Place (every node there that holds no replica
    scores alike, so a request scores each place once) or a replica holder's Candidate."""

    def __init__(self, scored: list[tuple[str, Locality]], remote: list[Volume]) -> None:
        super().__init__()
        self.scored, self.remote = scored, remote

    def __missing__(self, key: Place | Candidate) -> int:
        if isinstance(key, Candidate):
            score = _node_score(key.storage, key.storage_id, self.scored, self.remote)  # type: ignore[arg-type]
        else:
            score = UNKNOWN if key is NOWHERE else _node_score(key, "", self.scored, self.remote)
        self[key] = score
        return score


def _holder_ids(scored: list[tuple[str, Locality]], remote: list[Volume]) -> frozenset[str]:
    """Storage nodes whose score depends on more than their place: they hold a replica."""
    return frozenset().union(*(loc.replicas for _, loc in scored), *(v.data_nodes for v in remote))


_STORAGE_ID = attrgetter("storage_id")


def _scored_volumes(
    storage: PodStorage, index_by_id: Mapping[str, StorageNode]
) -> tuple[list[tuple[str, Locality]], list[Volume]]:
    """(volume name, locality) of the volumes that score by locality, and the anti-hyperconverged ones."""
    scored = [
        (v.claim or v.id, Locality.of(v, index_by_id))
        for v in storage.volumes
        if not anti_hyperconverged(v) and not ann.is_true(v.labels.get(ann.SKIP_SCHEDULER_SCORING))
    ]
    return scored, [v for v in storage.volumes if anti_hyperconverged(v)]


def _node_score(
    node: StorageNode | Place,
    storage_id: str,
    scored: list[tuple[str, Locality]],
    remote: list[Volume],
    parts: list[str] | None = None,
) -> int:
    """One storage node's score; with `parts`, also why (the same arithmetic, written down)."""
    total = 0
    keys = locality_keys(node.topology)  # once per node, not once per volume
    for volume, locality in scored:
        kind, points = locality.match(storage_id, node.status, keys)
        total += points
        if parts is not None:
            halved = " halved: StorageDown" if kind and node.status == NodeStatus.STORAGE_DOWN else ""
            parts.append(f"{volume}: {kind or 'no locality'} {points}{halved}")
    if remote:
        total = _anti_hyperconverge(total, storage_id, node.status, remote, parts)
    if total == 0:  # last, as upstream: a non-replica node of a shared volume scores exactly 100
        total = FLOOR
        if parts is not None:
            parts.append(f"floor {FLOOR}")
    return total


def _anti_hyperconverge(
    score: int, storage_id: str, status: NodeStatus, remote: list[Volume], parts: list[str] | None = None
) -> int:
    """Volumes served over the network prefer nodes without their replicas."""
    if any(storage_id in v.data_nodes for v in remote):
        if parts is not None:
            parts.append(f"anti-hyperconvergence: holds a replica of a shared volume, {FLOOR}")
        return FLOOR
    if status == NodeStatus.ONLINE:
        if parts is not None:
            parts.append(f"anti-hyperconvergence: +{REMOTE_BONUS}")
        return score + REMOTE_BONUS
    return score


def explain_score(
    pod: Mapping, storage: PodStorage, index_by_id: Mapping[str, StorageNode], candidate: Candidate
) -> tuple[int, list[str]]:
    """A candidate's score and its parts, by the code `score_candidates` runs (for `storkctl explain`)."""
    if not storage.concerns_driver:
        return FLOOR, [f"no driver volumes: {FLOOR} everywhere"]
    if not storage.uses_driver or storage.blocked or storage.driver_error:
        return UNKNOWN, ["no opinion: " + (storage.blocked or storage.driver_error or "no driver volumes")]
    if ann.is_true(objects.annotations(pod).get(ann.DISABLE_HYPERCONVERGENCE)):
        return FLOOR, [f"disableHyperconvergence: {FLOOR} everywhere"]
    if candidate.storage is None:
        return UNKNOWN, ["not a storage node"]
    scored, remote = _scored_volumes(storage, index_by_id)
    parts: list[str] = []
    return _node_score(candidate.storage, candidate.storage_id, scored, remote, parts), parts


def normalize(scores: list[int]) -> list[int]:
    """Scale into 0..MaxExtenderPriority keeping the order (ties may merge)."""
    top = max(scores, default=0)
    if top <= 0:
        return [0] * len(scores)
    return [s * MAX_EXTENDER_PRIORITY // top for s in scores]


def holds_any_replica(storage: PodStorage, candidates: list[Candidate]) -> bool:
    wanted = {n for v in storage.volumes for n in v.data_nodes}
    return any(map(wanted.__contains__, map(_STORAGE_ID, candidates)))  # non-storage nodes: "" is never wanted
