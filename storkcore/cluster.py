"""Cluster state for every component: one watch-backed Store per resource.

Without an API client (unit tests, benchmarks) the stores are plain in-memory
state that the caller fills. With one, each store is kept current by a
Reflector, and `get` falls back to a single direct GET on a cache miss: a
claim created a moment before its pod may not have reached the cache yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from storkcore import annotations as ann
from storkcore import objects
from storkcore.cache import Reflector, Store, slimmer
from storkcore.kube import (
    CSI_NODES,
    NODES,
    PVCS,
    PVS,
    STORAGE_CLASSES,
    Kube,
    Resource,
)
from storkcore.model import DriverError

log = logging.getLogger(__name__)


class StateUnavailable(DriverError):
    """An object is not cached and the API could not be asked for it."""


class ClusterState:
    def __init__(self, kube: Kube | None = None) -> None:
        self.kube = kube
        self._stores: dict[Resource, Store] = {}
        self._reflectors: dict[Resource, Reflector] = {}
        self._only: frozenset[Resource] | None = None  # None: watch every store
        self._lock = threading.Lock()
        self._started = False
        self._default_class_memo: tuple[int, dict | None] = (-1, None)
        for resource in (NODES, PVCS, PVS, STORAGE_CLASSES, CSI_NODES):
            self.store(resource)

    def store(self, resource: Resource, field_selector: str = "") -> Store:
        """The store of a resource, created (and watched, if started) on first use.

        A field selector, given when the store is created, keeps only matching objects
        (the API sends a deletion when an object stops matching).
        """
        with self._lock:
            found = self._stores.get(resource)
            if found is None:
                found = self._stores[resource] = Store(slimmer(resource))
                if self.kube is not None:
                    self._reflectors[resource] = Reflector(self.kube, resource, found, field_selector)
                    if self._started and self._watches(resource):
                        self._reflectors[resource].start()
            return found

    def kinds(self) -> list[Resource]:
        """The resources with a store so far."""
        with self._lock:
            return list(self._stores)

    def storage_version(self) -> tuple[int, ...]:
        """Changes so far to every kind but pods: equal versions, equal storage answers."""
        with self._lock:
            stores = [store for resource, store in self._stores.items() if resource.plural != "pods"]
        return tuple(store.version for store in stores)

    def _watches(self, resource: Resource) -> bool:
        return resource in self._reflectors and (self._only is None or resource in self._only)

    def start(self, only: Iterable[Resource] | None = None) -> None:
        """Start watching every store, or only some (a component that needs few kinds)."""
        with self._lock:
            self._started = True
            self._only = frozenset(only) if only is not None else None
            for resource, reflector in self._reflectors.items():
                if self._watches(resource):
                    reflector.start()

    def stop(self) -> None:
        for reflector in self._reflectors.values():
            reflector.stop()

    def _watched(self) -> list[Reflector]:
        return [r for resource, r in self._reflectors.items() if self._watches(resource)]

    def synced(self) -> bool:
        """True once every watched cache has completed its first list, or learned that the API
        does not serve its kind (none exists); always true in memory."""
        return all(r.settled for r in self._watched())

    def synced_for(self, resources: Iterable[Resource]) -> bool:
        """True once the watched caches of these resources have completed their first list."""
        wanted = set(resources)
        return all(
            r.synced.is_set()
            for resource, r in self._reflectors.items()
            if resource in wanted and self._watches(resource)
        )

    def kind_states(self) -> dict[Resource, str]:
        """Each watched cache's state: synced, not served, failing: <what>, or starting."""
        return {resource: r.state for resource, r in self._reflectors.items() if self._watches(resource)}

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(r.synced.wait(max(0.0, deadline - time.monotonic())) for r in self._watched())

    def get(self, resource: Resource, namespace: str, name: str) -> dict | None:
        """From the cache; on a miss, one direct GET (whose answer is cached too when the kind
        is watched). A kind with no store is only read directly: reading it never starts a
        list and watch (which the component's RBAC may not allow)."""
        with self._lock:
            store = self._stores.get(resource)
        found = store.get(namespace, name) if store is not None else None
        if found is not None or self.kube is None or not name:
            return found
        try:
            found = self.kube.get(resource, namespace, name)
        except Exception as err:  # API errors and connection trouble alike
            log.warning("direct read failed", extra={"resource": str(resource), "error": str(err)[:200]})
            raise StateUnavailable(f"cannot read {resource.plural} {name}: {str(err)[:80]}") from err
        if found is not None and store is not None and self._watches(resource):
            store.upsert(found)  # the watch will keep it current
        return found

    # Convenience readers for the kinds every component uses.

    def node(self, name: str) -> dict | None:
        return self.get(NODES, "", name)

    def pvc(self, namespace: str, name: str) -> dict | None:
        return self.get(PVCS, namespace, name)

    def pv(self, name: str) -> dict | None:
        return self.get(PVS, "", name)

    def storage_class(self, name: str) -> dict | None:
        return self.get(STORAGE_CLASSES, "", name)

    def default_storage_class(self) -> dict | None:
        """The class marked default; the newest wins when several are, as the apiserver does."""
        store = self.store(STORAGE_CLASSES)
        version, memo = self._default_class_memo
        if version == store.version:
            return memo
        defaults = [
            sc
            for sc in store.list()
            if ann.is_true(objects.annotations(sc).get(ann.DEFAULT_CLASS))
            or ann.is_true(objects.annotations(sc).get(ann.BETA_DEFAULT_CLASS))
        ]
        defaults.sort(key=lambda sc: objects.text(sc, "metadata", "creationTimestamp"), reverse=True)
        chosen = defaults[0] if defaults else None
        self._default_class_memo = (store.version, chosen)
        return chosen
