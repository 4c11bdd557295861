"""Leader election on a `coordination.k8s.io/v1` Lease.

The holder renews the lease every `retry_period`; others take it over once it
has not changed for `lease_duration` by their own clock (holders' clocks may
differ, so expiry is judged from when we last saw it change). A leader counts
itself the leader only while its last renewal is younger than
`renew_deadline` (shorter than the lease): when renewals fail it stops acting
before anyone else can start.

Why not the official client's `kubernetes.leaderelection` (with its LeaseLock),
which follows the same Lease protocol? Three things the controller needs that it
does not do (each has a test in tests/unit/test_leader.py):
1. Leadership is a question asked before every action (`is_leader()`), answered
   from the last successful renewal: the library runs an `onstarted_leading`
   callback in a thread and only learns it lost the lease after its renew loop
   gave up, while that thread may still be deleting pods.
2. A replica that loses the lease stays a candidate and leads again when the
   lease is free: the library's `run()` returns for good after losing it (the
   process would have to be restarted to compete again).
3. It stops: `stop()` ends the election thread (SIGTERM, tests); the library's
   acquire and renew loops sleep in `while True` with no way out.
It also goes through stork-py's own API client (`storkcore.kube.Kube`), so the
lease calls carry the component's user agent that the RBAC coverage test reads.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from storkcore.kube import ApiError, Kube, Resource

log = logging.getLogger(__name__)
LEASES = Resource("coordination.k8s.io", "v1", "leases")


class LeaseApi(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


class KubeLeases:
    """LeaseApi over the apiserver; a conflict (409) raises ApiError."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(LEASES, namespace, name)

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.kube.create(LEASES, namespace, body)

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.kube.request("PUT", LEASES.object_path(namespace, name), body=body)


@dataclass(frozen=True)
class LeaseSettings:
    name: str = "stork-controller"
    namespace: str = "stork"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class LeaderElector:
    def __init__(
        self,
        api: LeaseApi,
        settings: LeaseSettings,
        identity: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.api = api
        self.settings = settings
        self.identity = identity or default_identity()
        self.clock = clock
        self.on_change = on_change
        self._renewed_at: float | None = None  # our last successful renewal (our clock)
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._was_leader = False
        self._stop = threading.Event()

    def is_leader(self) -> bool:
        renewed = self._renewed_at
        leading = renewed is not None and self.clock() - renewed < self.settings.renew_deadline
        if leading != self._was_leader:
            self._was_leader = leading
            log.warning("leadership changed", extra={"leader": leading, "identity": self.identity})
            self.on_change(leading)
        return leading

    def try_acquire_or_renew(self) -> bool:
        """One round of the election; returns whether we hold the lease now."""
        s = self.settings
        try:
            lease = self.api.get(s.namespace, s.name)
            now = self.clock()
            if lease is None:
                self.api.create(s.namespace, self._lease_body(None, transitions=0))
                return self._won(now)
            spec = lease.get("spec") or {}
            holder, renew_time = spec.get("holderIdentity") or "", spec.get("renewTime") or ""
            if (holder, renew_time) != self._observed:
                self._observed, self._observed_at = (holder, renew_time), now
            if holder and holder != self.identity and now - self._observed_at < s.lease_duration:
                self._renewed_at = None
                return False  # someone else holds a live lease
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
            self.api.replace(
                s.namespace, s.name, self._lease_body(lease, transitions, keep_acquire=holder == self.identity)
            )
            return self._won(now)
        except ApiError as err:
            if err.status != 409:  # 409: another replica was faster
                log.warning("lease update failed", extra={"error": str(err)[:200]})
            return self.is_leader()
        except Exception as err:  # apiserver unreachable: leadership lapses by itself
            log.warning("lease update failed", extra={"error": str(err)[:200]})
            return self.is_leader()

    def _won(self, now: float) -> bool:
        self._renewed_at = now
        return self.is_leader()

    def _lease_body(self, lease: dict[str, Any] | None, transitions: int, keep_acquire: bool = False) -> dict[str, Any]:
        s = self.settings
        now = micro_time()
        spec = (lease or {}).get("spec") or {}
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(s.lease_duration),
                "acquireTime": spec.get("acquireTime") if keep_acquire and spec.get("acquireTime") else now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }
        if lease is not None:
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return body

    def run(self) -> None:
        """Keep electing until stopped (a daemon thread)."""
        while not self._stop.is_set():
            self.try_acquire_or_renew()
            self._stop.wait(self.settings.retry_period)

    def start(self) -> None:
        threading.Thread(target=self.run, name="leader-election", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


class AlwaysLeader:
    """--no-leader-elect: a single replica that always acts."""

    def is_leader(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
