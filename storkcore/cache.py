"""Watch-backed caches: a thread-safe Store filled by a Reflector (list, then watch).

The Reflector lists a resource, then watches from the list's resourceVersion,
resumes from the last seen version after a dropped connection (with back-off),
and lists again when the server says the version is too old (410 Gone).
"""

from __future__ import annotations

import logging
import random
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from storkcore import objects
from storkcore.kube import ApiError, Kube, Resource

log = logging.getLogger(__name__)

Listener = Callable[[dict | None, dict | None], None]  # (old, new); None = absent


class Store:
    """Objects of one resource by (namespace, name), with a change counter and log.

    `version` grows on every change; `changed_since(v)` names the keys changed
    after version v, so derived tables can be patched instead of rebuilt.
    Listeners hear every change as (old, new) and must be quick. Objects are
    replaced on change, never modified in place.
    """

    LOG_SIZE = 8192

    def __init__(self, trim: Callable[[dict], dict] | None = None) -> None:
        self._trim = trim or slim  # applied to every object stored (see `slim`)
        self._objects: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._log: deque[tuple[int, tuple[str, str]]] = deque()
        self._log_floor = 0  # changes at or below this version may be missing from the log
        self.version = 0

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, namespace: str, name: str) -> dict | None:
        return self._objects.get((namespace, name))

    def view(self) -> Mapping[tuple[str, str], dict]:
        """The live mapping, for hot loops that cannot afford a call per lookup. Read only."""
        return self._objects

    def list(self) -> list[dict]:
        return list(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    def changed_since(self, version: int) -> set[tuple[str, str]] | None:
        """Keys changed after `version`; None when the log no longer reaches back that far."""
        with self._lock:
            if version == self.version:
                return set()
            if not self._log_floor <= version < self.version:
                return None
            return {key for v, key in self._log if v > version}

    def upsert(self, obj: dict) -> None:
        obj = self._trim(obj)
        key = objects.key(obj)
        with self._lock:
            old = self._objects.get(key)
            self._objects[key] = obj
            self._bump([key])
        self._notify(old, obj)

    def delete(self, obj: dict) -> None:
        key = objects.key(obj)
        with self._lock:
            old = self._objects.pop(key, None)
            if old is not None:
                self._bump([key])
        if old is not None:
            self._notify(old, None)

    def replace(self, new_objects: Iterable[dict]) -> None:
        """Swap in a full list (after a LIST); listeners hear each difference."""
        fresh = {objects.key(o): o for o in map(self._trim, new_objects)}
        with self._lock:
            old = self._objects
            changed = [k for k, o in fresh.items() if old.get(k) is not o] + [k for k in old if k not in fresh]
            self._objects = fresh
            self._bump(changed)
        for key in changed:
            previous, current = old.get(key), fresh.get(key)
            self._notify(previous, current)

    def _bump(self, keys: list[tuple[str, str]]) -> None:
        self.version += 1
        self._log.extend((self.version, k) for k in keys)
        while len(self._log) > self.LOG_SIZE:
            self._log_floor = self._log.popleft()[0]  # readers older than this rebuild

    def _notify(self, old: dict | None, new: dict | None) -> None:
        for listener in self._listeners:
            try:
                listener(old, new)
            except Exception:  # a broken listener must not stop the cache
                log.exception("cache listener failed")


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
INTERN_MAX = 64  # longer strings are rarely repeated (and cost more to hash)
# Values that are never repeated: interning them would only grow the interpreter's table.
UNIQUE_KEYS = frozenset({"uid", "resourceVersion"})

# Subtrees no stork-py code reads, by (API group, plural): caches drop them. On a real cluster
# these are most of a Node (images, attached volumes) and of Longhorn's objects (status). Add a
# path only after checking that nothing reads it: the unit tests' stores drop them too.
UNREAD: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("", "nodes"): (
        ("metadata", "creationTimestamp"),
        ("metadata", "uid"),  # no event or precondition names a Node
        ("status", "images"),
        ("status", "volumesInUse"),
        ("status", "volumesAttached"),
        ("status", "nodeInfo"),
        ("status", "daemonEndpoints"),
        ("status", "capacity"),
        ("status", "allocatable"),
    ),
    ("", "persistentvolumes"): (
        ("metadata", "creationTimestamp"),
        ("metadata", "uid"),
        ("spec", "claimRef"),
        ("status",),
    ),
    ("", "persistentvolumeclaims"): (("metadata", "creationTimestamp"), ("spec", "resources")),
    ("longhorn.io", "volumes"): (
        ("metadata", "creationTimestamp"),
        ("metadata", "uid"),
        ("status",),
        ("spec", "dataEngine"),
        ("spec", "dataLocality"),
        ("spec", "frontend"),
        ("spec", "numberOfReplicas"),
        ("spec", "size"),
    ),
    ("longhorn.io", "replicas"): (
        ("metadata", "creationTimestamp"),
        ("metadata", "uid"),
        ("metadata", "labels"),
        ("status",),
        ("spec", "active"),
        ("spec", "dataEngine"),
        ("spec", "dataDirectoryName"),
        ("spec", "diskPath"),
        ("spec", "diskID"),
        ("spec", "volumeSize"),
    ),
    ("longhorn.io", "nodes"): (("metadata", "creationTimestamp"), ("metadata", "uid"), ("spec", "disks")),
}
# Read by nothing, for any kind.
UNREAD_ANYWHERE: tuple[tuple[str, ...], ...] = (
    ("metadata", "managedFields"),
    ("metadata", "finalizers"),
    ("metadata", "generation"),
)


def slim(obj: dict[str, Any], unread: Iterable[tuple[str, ...]] = ()) -> dict[str, Any]:
    """What a cache keeps of an object, changed in place: no subtree nobody reads, and one
    shared copy of each short string (names, labels, classes, drivers repeat across
    thousands of objects).

    `metadata.managedFields` (server-side apply's field ownership) and kubectl's
    last-applied-configuration annotation (a copy of the whole object as JSON) are
    often most of a small object's size; in a cache of 100,000 objects that is
    hundreds of MB. Sharing strings saved a further 30-45 % per object (measured on
    the simulated PVs, claims, nodes and Longhorn objects of bench/memory.py).
    """
    for path in (*UNREAD_ANYWHERE, *unread):
        _drop(obj, path)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        notes = meta.get("annotations")
        if isinstance(notes, dict) and LAST_APPLIED in notes:
            meta["annotations"] = {k: v for k, v in notes.items() if k != LAST_APPLIED}
    _share_strings(obj)
    return obj


def slimmer(resource: Resource) -> Callable[[dict[str, Any]], dict[str, Any]]:
    unread = UNREAD.get((resource.group, resource.plural), ())
    return lambda obj: slim(obj, unread)


def _drop(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    parent: Any = obj
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _share_strings(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if len(item) <= INTERN_MAX and key not in UNIQUE_KEYS:
                    value[key] = sys.intern(item)
            elif isinstance(item, dict | list):
                _share_strings(item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                if len(item) <= INTERN_MAX:
                    value[i] = sys.intern(item)
            elif isinstance(item, dict | list):
                _share_strings(item)


class Reflector:
    """Keeps one Store in step with the API in a daemon thread."""

    WATCH_SECONDS = 300
    PAGE_SIZE = 500  # objects per LIST request
    MIN_BACKOFF = 0.5
    MAX_BACKOFF = 30.0
    NOT_SERVED_RETRY = 10.0  # a kind that appears (its CRD applied) is listed within this

    def __init__(self, kube: Kube, resource: Resource, store: Store, field_selector: str = "") -> None:
        self.kube = kube
        self.resource = resource
        self.store = store
        self.field_selector = field_selector
        self.synced = threading.Event()
        self.state = "starting"  # synced | not served | failing: <what> | starting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reflector {resource}", daemon=True)
        self._resource_version = ""

    @property
    def settled(self) -> bool:
        """Synced, or the API does not serve the kind (so none of it exists: an empty cache is
        the truth until it is served, and it is listed as soon as it is)."""
        return self.synced.is_set() or self.state == "not served"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = self.MIN_BACKOFF
        while not self._stop.is_set():
            try:
                if not self._resource_version:
                    self._list()
                self._watch()
                backoff = self.MIN_BACKOFF
            except ApiError as err:
                if err.gone:
                    log.info("watch expired, listing again", extra={"resource": str(self.resource)})
                    self._resource_version = ""
                    continue
                if err.status == 404:  # the kind is not served (a CRD not installed, or deleted)
                    self._resource_version = ""
                    self.store.replace([])  # none of it exists now
                    backoff = self._pause(min(backoff, self.NOT_SERVED_RETRY), err, "not served")
                    continue
                backoff = self._pause(backoff, err, f"failing: API answered {err.status}")
            except Exception as err:  # connection trouble: resume from the last version
                backoff = self._pause(backoff, err, f"failing: {type(err).__name__}")

    def _pause(self, backoff: float, err: Exception, state: str) -> float:
        """Wait before retrying; a line in the log only when the state changes (not per retry)."""
        if state != self.state:
            log.warning(
                "cache not served, waiting for it" if state == "not served" else "cache connection failed, retrying",
                extra={"resource": str(self.resource), "state": state, "error": str(err)[:300]},
            )
            self.state = state
        self._stop.wait(backoff * random.uniform(0.8, 1.2))
        cap = self.NOT_SERVED_RETRY if state == "not served" else self.MAX_BACKOFF
        return min(backoff * 2, cap)

    def _list(self) -> None:
        versions: list[str] = []

        def listed() -> Iterator[dict]:  # page by page: the store trims each page as it arrives
            for items, version in self.kube.list_pages(self.resource, self.PAGE_SIZE, self.field_selector):
                versions.append(version)
                yield from items

        self.store.replace(listed())
        self._resource_version = versions[-1] if versions else ""
        if self.state != "synced":
            log.info("cache synced", extra={"resource": str(self.resource), "objects": len(self.store)})
            self.state = "synced"
        self.synced.set()

    def _watch(self) -> None:
        watch = self.kube.watch(self.resource, self._resource_version, self.WATCH_SECONDS, self.field_selector)
        for event in watch:
            if self._stop.is_set():
                return
            self._apply(event)
            if self.state != "synced":  # the watch answers again after trouble
                log.info("cache connection restored", extra={"resource": str(self.resource)})
                self.state = "synced"

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise ApiError(int(obj.get("code") or 500), obj.get("message") or "watch error")
        version = objects.text(obj, "metadata", "resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self.store.upsert(obj)
        elif kind == "DELETED":
            self.store.delete(obj)
        if version:
            self._resource_version = version
