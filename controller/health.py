"""The storage health monitor (SPEC §6): move pods off nodes whose storage died, safely.

It is driven by `tick()` and an injected clock, so that tests run minutes of
back-off in milliseconds. Each storage node that looks offline becomes a Case:
it is re-checked (fresh from the API) with back-off, about 2.5 minutes in all;
if it is still offline then, the pods on its Kubernetes node that use driver
volumes are deleted in batches (5 pods, 30 s apart, the node re-checked before
each batch), so their controllers recreate them elsewhere.

Safeguards, each tested:
- more than `max_offline_fraction` of the driver's nodes offline at once is a
  control-plane or driver-wide problem: nothing is done;
- StorageDown (storage down, node up, data reachable over the network) is never acted on;
- pods annotated `stork.libopenstorage.org/disable-health-monitor: "true"`, mirror
  pods, DaemonSet pods and pods without driver volumes are never touched;
- an offline driver node sharing an IP or scheduler id with an online one is a
  replaced node's stale record: ignored;
- a node that comes back during back-off or between batches stops the deletions;
- deletion is graceful while the Kubernetes node is Ready, forced only when not;
- only the leader acts, and it asks before every deletion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from storkcore import annotations as ann
from storkcore import objects
from storkcore.drivers.base import Driver
from storkcore.events import EventSink
from storkcore.kube import NODES, PODS
from storkcore.model import DriverError, NodeStatus, StorageNode
from storkcore.pods import assess_pod

log = logging.getLogger(__name__)

# Why the monitor held back (the reason label of stork_health_monitor_skipped_total).
REPLACED_NODE, TOO_MANY_OFFLINE = "replaced-node", "too-many-offline"
SKIP_REASONS = (REPLACED_NODE, TOO_MANY_OFFLINE)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
MIN_INTERVAL = 30.0


@dataclass(frozen=True)
class MonitorSettings:
    interval: float = 120.0
    backoff: tuple[float, ...] = (15.0, 30.0, 45.0, 60.0)  # waits between re-checks: 2.5 min in all
    batch_size: int = 5
    batch_interval: float = 30.0
    max_offline_fraction: float = 0.5
    act_on_degraded: bool = False

    @classmethod
    def scaled(cls, interval: float, backoff_total: float, batch_interval: float, **kwargs: Any) -> MonitorSettings:
        """Back-off split into growing steps (10%, 20%, 30%, 40% of the total)."""
        steps = tuple(backoff_total * share for share in (0.1, 0.2, 0.3, 0.4))
        return cls(interval=interval, backoff=steps, batch_interval=batch_interval, **kwargs)


class PodActions(Protocol):
    def delete(self, pod: Mapping[str, Any], grace_seconds: int | None) -> None:
        """Delete this pod (this uid); None: its own grace period."""


class Metrics(Protocol):
    def rescheduled(self) -> None: ...
    def skipped(self, reason: str) -> None: ...
    def offline_nodes(self, count: int) -> None: ...


@dataclass
class Case:
    """One offline storage node being handled."""

    storage_id: str
    next_at: float
    checks: int = 0  # re-checks done
    confirmed: bool = False
    deleted: set[str] = field(default_factory=set)  # pod uids


class HealthMonitor:
    def __init__(
        self,
        driver: Driver,
        actions: PodActions,
        events: EventSink,
        settings: MonitorSettings,
        clock: Callable[[], float],
        is_leader: Callable[[], bool],
        metrics: Metrics,
    ) -> None:
        self.driver = driver
        self.actions = actions
        self.events = events
        self.settings = settings
        self.clock = clock
        self.is_leader = is_leader
        self.metrics = metrics
        self.cases: dict[str, Case] = {}
        self._next_scan = 0.0
        self._force_deleted: set[str] = set()
        acted = {NodeStatus.OFFLINE} | ({NodeStatus.DEGRADED} if settings.act_on_degraded else set())
        self._acted_on = frozenset(acted)

    # -- the loop ----------------------------------------------------------------

    def tick(self) -> float:
        """Do what is due; returns the seconds until something else is."""
        now = self.clock()
        if not self.is_leader():
            self.cases.clear()  # a new leader starts its own back-off
            self._next_scan = 0.0
            return self.settings.interval
        if now >= self._next_scan:
            self._scan()
            self._force_delete_stuck()
            self._next_scan = now + self.settings.interval
        for case in list(self.cases.values()):
            if case.next_at <= now and case.storage_id in self.cases:
                self._advance(case, now)
        due = [self._next_scan, *(c.next_at for c in self.cases.values())]
        return max(0.0, min(due) - self.clock())

    # -- finding offline nodes -----------------------------------------------------

    def _scan(self) -> None:
        nodes = self.driver.nodes()
        offline = [n for n in nodes if n.status in self._acted_on]
        self.metrics.offline_nodes(len(offline))
        if self._too_many_offline(nodes, offline):
            self.cases.clear()
            return
        online = [n for n in nodes if n.status not in self._acted_on]
        real = [n for n in offline if not _replaced(n, online)]
        for node in offline:
            if node not in real:
                self.metrics.skipped(REPLACED_NODE)
        wanted = {n.storage_id for n in real}
        for storage_id in list(self.cases):
            if storage_id not in wanted:
                log.info("storage node back online", extra={"node": storage_id})
                del self.cases[storage_id]
        for node in real:
            if node.storage_id not in self.cases:
                log.warning("storage node offline, re-checking before acting", extra={"node": node.storage_id})
                self.cases[node.storage_id] = Case(node.storage_id, self.clock() + self.settings.backoff[0])

    def _too_many_offline(self, nodes: list[StorageNode], offline: list[StorageNode]) -> bool:
        if nodes and len(offline) > self.settings.max_offline_fraction * len(nodes):
            log.error(
                "too many storage nodes offline at once: not acting (a driver-wide or control-plane problem)",
                extra={"offline": len(offline), "nodes": len(nodes)},
            )
            self.metrics.skipped(TOO_MANY_OFFLINE)
            return True
        return False

    # -- one case ----------------------------------------------------------------

    def _advance(self, case: Case, now: float) -> None:
        try:
            fresh = self.driver.node(case.storage_id)
        except Exception as err:  # cannot tell now: ask again later, never act blind
            log.warning("re-check failed", extra={"node": case.storage_id, "error": str(err)[:200]})
            case.next_at = now + self.settings.backoff[0]
            return
        if fresh is None or fresh.status not in self._acted_on:
            log.info("storage node recovered, stopping", extra={"node": case.storage_id})
            del self.cases[case.storage_id]
            return
        nodes = self.driver.nodes()
        if self._too_many_offline(nodes, [n for n in nodes if n.status in self._acted_on]):
            self.cases.clear()
            return
        if not case.confirmed:
            case.checks += 1
            if case.checks < len(self.settings.backoff):
                case.next_at = now + self.settings.backoff[case.checks]
                return
            case.confirmed = True
            log.warning("storage node still offline: moving its pods", extra={"node": case.storage_id})
        self._delete_batch(case, fresh, now)

    def _delete_batch(self, case: Case, storage: StorageNode, now: float) -> None:
        pods = [p for p in self._pods_on(storage) if objects.text(p, "metadata", "uid") not in case.deleted]
        for pod in pods[: self.settings.batch_size]:
            if not self.is_leader():
                return  # lost the lease: stop at once
            self._delete(pod, storage, case)
        # More to move: the next batch after a pause. Done: keep watching the node (its
        # confirmed state stays) until it comes back, sweeping once an interval.
        more = len(pods) > self.settings.batch_size
        case.next_at = now + (self.settings.batch_interval if more else self.settings.interval)

    def _delete(self, pod: Mapping[str, Any], storage: StorageNode, case: Case) -> None:
        node_name = objects.text(pod, "spec", "nodeName")
        node = self.driver.cluster.store(NODES).get("", node_name)
        grace = None if _node_reachable(node) else 0
        self.events.warn(
            pod,
            "StorageDriverOffline",
            f"{self.driver.name} storage on node {node_name} is offline; deleting the pod so it is recreated elsewhere",
        )
        try:
            self.actions.delete(pod, grace)
        except Exception as err:
            log.warning("pod deletion failed", extra={"pod": _pod_id(pod), "error": str(err)[:200]})
            return
        case.deleted.add(objects.text(pod, "metadata", "uid"))
        self.metrics.rescheduled()
        log.warning("pod deleted", extra={"pod": _pod_id(pod), "node": node_name, "force": grace == 0})

    # -- which pods ----------------------------------------------------------------

    def _pods_on(self, storage: StorageNode) -> list[dict[str, Any]]:
        """Pods on the Kubernetes node(s) of a storage node that we may move."""
        index = self.driver.index()
        node_names = {
            objects.name(n)
            for n in self.driver.cluster.store(NODES).list()
            if getattr(index.match(n), "storage_id", None) == storage.storage_id
        }
        found = []
        for pod in self.driver.cluster.store(PODS).list():
            if objects.text(pod, "spec", "nodeName") not in node_names:
                continue
            if objects.dig(pod, "metadata", "deletionTimestamp"):
                continue  # already going
            if self._movable(pod):
                found.append(pod)
        return sorted(found, key=_pod_id)

    def _movable(self, pod: Mapping[str, Any]) -> bool:
        notes = objects.annotations(pod)
        if ann.is_true(notes.get(ann.DISABLE_HEALTH_MONITOR)):
            return False
        if MIRROR_ANNOTATION in notes:
            return False  # a static pod: the kubelet owns it
        if any(
            isinstance(o, Mapping) and o.get("kind") == "DaemonSet"
            for o in objects.items(pod, "metadata", "ownerReferences")
        ):
            return False  # it belongs on this node
        try:
            return assess_pod(self.driver, pod).uses_driver
        except DriverError:
            return False

    def _force_delete_stuck(self) -> None:
        """Pods stuck terminating on unreachable nodes hold their volumes: force them out."""
        nodes = self.driver.cluster.store(NODES)
        for pod in self.driver.cluster.store(PODS).list():
            uid = objects.text(pod, "metadata", "uid")
            if not objects.dig(pod, "metadata", "deletionTimestamp") or uid in self._force_deleted:
                continue
            node = nodes.get("", objects.text(pod, "spec", "nodeName"))
            lost = objects.text(pod, "status", "reason") == "NodeLost" or _has_unreachable_taint(node)
            if not lost or not self._movable(pod) or not self.is_leader():
                continue
            try:
                self.actions.delete(pod, 0)
            except Exception as err:
                log.warning("force deletion failed", extra={"pod": _pod_id(pod), "error": str(err)[:200]})
                continue
            self._force_deleted.add(uid)
            self.metrics.rescheduled()
            log.warning("pod stuck terminating on an unreachable node force-deleted", extra={"pod": _pod_id(pod)})


def _replaced(node: StorageNode, online: Iterable[StorageNode]) -> bool:
    """An offline record sharing an IP or scheduler id with an online node: the node was replaced."""
    return any(
        (node.scheduler_id and node.scheduler_id == other.scheduler_id) or set(node.ips) & set(other.ips)
        for other in online
    )


def _has_unreachable_taint(node: Mapping[str, Any] | None) -> bool:
    return any(
        isinstance(t, Mapping) and t.get("key") == UNREACHABLE_TAINT and t.get("effect") == "NoExecute"
        for t in objects.items(node, "spec", "taints")
    )


def _node_reachable(node: Mapping[str, Any] | None) -> bool:
    return node is not None and objects.node_is_ready(node) and not _has_unreachable_taint(node)


def _pod_id(pod: Mapping[str, Any]) -> str:
    return f"{objects.namespace(pod)}/{objects.name(pod)}"
