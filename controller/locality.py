"""The way back from the replica-node constraint (storkcore/locality.py).

The webhook holds a pod that a controller owns to its replica nodes. When
kube-scheduler finds that none of them can take it (CPU or memory full, a taint
or cordon that came later, storage that went offline after admission), the pod
would wait for ever. Stork's promise is the opposite: a pod runs on another node
where the driver runs. So, for a held pod that has been unschedulable for
`after` seconds, the leader:
1. marks each of its claims with `locality-fallback-until` (now + `window`), so
   that the webhook admits their next pods without the constraint;
2. posts a Warning event `LocalityFallback` on the pod and its claims, naming the
   nodes and the scheduler's reason;
3. deletes the pod (this uid only), so that its controller recreates it.
The replacement is then placed as upstream Stork places every pod: the extender
prefers replica nodes among those kube-scheduler offers. A `preferLocalNodeOnly`
pod is never released this way: it accepts only replica nodes in any case.
Bound: `after` (default 5 s) plus one tick (1 s) after the scheduler's verdict,
then one scheduling cycle of the replacement.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from storkcore import annotations as ann
from storkcore import objects
from storkcore.events import EventRecorder
from storkcore.locality import format_time, held_nodes, parse_time
from storkcore.pods import claim_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FallbackSettings:
    after: float = 5.0  # seconds a held pod stays unschedulable before it is released
    window: float = 600.0  # seconds the claims' next pods are admitted unconstrained


class FallbackCluster(Protocol):
    def pending_pods(self) -> list[Mapping[str, Any]]:
        """Pods not bound to a node yet."""

    def mark_claim(self, namespace: str, claim: str, until: str) -> Mapping[str, Any] | None:
        """Write `locality-fallback-until` on a claim; the claim, or None when it is gone."""

    def delete_pod(self, pod: Mapping[str, Any]) -> None:
        """Delete this pod (this uid only)."""


def unschedulable_since(pod: Mapping[str, Any]) -> datetime.datetime | None:
    """When kube-scheduler last said the pod fits no node; None when it did not."""
    for condition in objects.items(pod, "status", "conditions"):
        if (
            isinstance(condition, Mapping)
            and condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return parse_time(condition.get("lastTransitionTime")) or datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return None


def scheduler_message(pod: Mapping[str, Any]) -> str:
    for condition in objects.items(pod, "status", "conditions"):
        if isinstance(condition, Mapping) and condition.get("type") == "PodScheduled":
            return str(condition.get("message") or "")
    return ""


class LocalityFallback:
    def __init__(
        self,
        cluster: FallbackCluster,
        events: EventRecorder,
        settings: FallbackSettings,
        now: Callable[[], datetime.datetime],
        is_leader: Callable[[], bool],
        on_release: Callable[[], None] = lambda: None,
    ) -> None:
        self.cluster = cluster
        self.events = events
        self.settings = settings
        self.now = now
        self.is_leader = is_leader
        self.on_release = on_release
        self._released: set[str] = set()  # pod uids, so that a slow deletion is not repeated

    def tick(self) -> None:
        if not self.is_leader():
            return
        now = self.now()
        for pod in self.cluster.pending_pods():
            if self._due(pod, now):
                self.release(pod, now)

    def _due(self, pod: Mapping[str, Any], now: datetime.datetime) -> bool:
        if objects.text(pod, "spec", "nodeName") or not held_nodes(pod):
            return False
        if ann.is_true(objects.annotations(pod).get(ann.PREFER_LOCAL_NODE_ONLY)):
            return False  # only replica nodes would do in any case
        if objects.mapping(pod, "metadata").get("deletionTimestamp"):
            return False
        since = unschedulable_since(pod)
        if since is None or objects.text(pod, "metadata", "uid") in self._released:
            return False
        return (now - since).total_seconds() >= self.settings.after

    def release(self, pod: Mapping[str, Any], now: datetime.datetime) -> None:
        namespace = objects.namespace(pod)
        until = format_time(now + datetime.timedelta(seconds=self.settings.window))
        nodes = ", ".join(held_nodes(pod))
        reason = scheduler_message(pod) or "no replica node fits"
        message = (
            f"replica nodes {nodes} cannot take the pod ({reason}); "
            f"its controller recreates it without the replica-node constraint (claims marked until {until})"
        )
        for claim in claim_names(pod):
            marked = self.cluster.mark_claim(namespace, claim, until)
            if marked is not None:
                claim_object = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **marked}
                self.events.record(claim_object, "Warning", "LocalityFallback", f"pod {objects.name(pod)}: {message}")
        self.events.warn(pod, "LocalityFallback", message)
        self.cluster.delete_pod(pod)
        self._released.add(objects.text(pod, "metadata", "uid"))
        if len(self._released) > 10_000:
            self._released.clear()
        self.on_release()
        log.info("held pod released", extra={"namespace": namespace, "pod": objects.name(pod), "nodes": nodes})
