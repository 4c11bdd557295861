"""Kubernetes Events (on pods, and on stork's own objects), posted off the request path.

A request handler only queues an event; a background thread posts it. The
same (pod, reason, message) is posted at most once a minute: the scheduler
retries an unschedulable pod every few seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from storkcore import objects
from storkcore.kube import Kube, Resource

log = logging.getLogger(__name__)
EVENTS = Resource("", "v1", "events")


class EventSink(Protocol):
    def warn(self, pod: Mapping[str, Any], reason: str, message: str) -> None: ...


def event_body(
    obj: Mapping[str, Any], reason: str, message: str, component: str, event_type: str = "Warning"
) -> dict[str, Any]:
    """An Event about `obj` (a pod unless the object says its own apiVersion and kind)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj_name, namespace = objects.name(obj), objects.namespace(obj) or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{obj_name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion") or "v1",
            "kind": obj.get("kind") or "Pod",
            "name": obj_name,
            "namespace": namespace,
            "uid": objects.text(obj, "metadata", "uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    """Posts Warning events on pods from a background thread."""

    REPEAT_SECONDS = 60.0

    def __init__(
        self,
        kube: Kube | None,
        component: str,
        clock: Callable[[], float] = time.monotonic,
        max_queue: int = 1000,
    ) -> None:
        self.kube = kube
        self.component = component
        self.clock = clock
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(max_queue)
        self._recent: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        self.posted: list[dict[str, Any]] = []  # kept only without an API (local runs, tests)
        self._thread: threading.Thread | None = None

    def warn(self, pod: Mapping[str, Any], reason: str, message: str) -> None:
        self.record(pod, "Warning", reason, message)

    def record(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        obj_id = objects.text(obj, "metadata", "uid") or "/".join(objects.key(obj))
        if not self._first_in_a_while((obj_id, reason, message)):
            return
        body = event_body(obj, reason, message, self.component, event_type)
        if self.kube is None:
            self.posted.append(body)
            return
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            log.warning("event queue full, dropping event", extra={"reason": reason})
            return
        self._ensure_worker()

    def _first_in_a_while(self, key: tuple[str, str, str]) -> bool:
        now = self.clock()
        with self._lock:
            last = self._recent.get(key)
            if last is not None and now - last < self.REPEAT_SECONDS:
                return False
            self._recent[key] = now
            if len(self._recent) > 10_000:
                self._recent = {k: t for k, t in self._recent.items() if now - t < self.REPEAT_SECONDS}
            return True

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._post_forever, name="events", daemon=True)
                self._thread.start()

    def _post_forever(self) -> None:
        assert self.kube is not None
        while True:
            body = self._queue.get()
            try:
                self.kube.create(EVENTS, body["metadata"]["namespace"], body)
            except Exception as err:
                log.warning("posting event failed", extra={"reason": body["reason"], "error": str(err)[:200]})
