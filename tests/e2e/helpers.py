"""Workloads and waits for end-to-end tests; every assertion reads what the API shows."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from localcluster import simulate
from storkcore.kube import ApiError, Kube, Resource

PODS = Resource("", "v1", "pods")
LOCAL_VOLUMES = "kubernetes.io/no-provisioner"  # the provisioner of local PersistentVolumes
LOCAL_DRIVER_ARGS = ["--csi-driver-name", LOCAL_VOLUMES]  # stork's csi driver, for local volumes
EVENTS = Resource("", "v1", "events")
T = TypeVar("T")
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def wait_for(fetch: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    """Poll until fetch returns something truthy; API errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = fetch()
        except ApiError:
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def create_deployment(
    kube: Kube, namespace: str, name: str, claims: list[str], annotations: Mapping[str, str] | None = None
) -> None:
    simulate.deployment(kube, namespace, name, claims, annotations)


def create_pod(kube: Kube, namespace: str, name: str, claims: list[str], annotations=None) -> dict[str, Any]:
    body = simulate.pod_template(claims, annotations)
    body["metadata"]["name"] = name
    return kube.create(PODS, namespace, {"apiVersion": "v1", "kind": "Pod", **body})


def pods_of(kube: Kube, namespace: str, app: str) -> list[dict[str, Any]]:
    found = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"app={app}"})
    return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]


def bound_pod(kube: Kube, namespace: str, app: str, timeout: float = 60) -> dict[str, Any]:
    def fetch():
        pods = pods_of(kube, namespace, app)
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    return wait_for(fetch, timeout, f"a bound pod of {namespace}/{app}")


def replacement_pod(kube: Kube, namespace: str, app: str, first: dict[str, Any], timeout: float = 60) -> dict:
    """The bound pod of `app` that replaced `first` (deleted by the health monitor)."""
    return wait_for(
        lambda: next(
            (
                p
                for p in pods_of(kube, namespace, app)
                if p["metadata"]["uid"] != first["metadata"]["uid"] and p["spec"].get("nodeName")
            ),
            None,
        ),
        timeout,
        "the replacement pod to be bound",
    )


def wait_bound_claim(kube: Kube, namespace: str, claim: str) -> None:
    simulate.wait_bound_claim(kube, namespace, claim)


def longhorn_workload(kube: Kube, namespace: str, replicas_on: list[str], app: str | None = None) -> tuple[str, str]:
    """A Longhorn volume with replicas on the given nodes, its bound claim `data`, and a
    Deployment using it; returns (app, volume)."""
    volume = unique("vol")
    simulate.add_longhorn_volume(kube, volume, replicas_on)
    simulate.longhorn_claim(kube, namespace, "data", volume)
    wait_bound_claim(kube, namespace, "data")
    app = app or unique("app")
    create_deployment(kube, namespace, app, ["data"])
    return app, volume


def events_for(kube: Kube, namespace: str, pod_name: str) -> list[dict[str, Any]]:
    found = kube.request(
        "GET", f"/api/v1/namespaces/{namespace}/events", {"fieldSelector": f"involvedObject.name={pod_name}"}
    )
    return found["items"]


def local_claim_on(kube: Kube, namespace: str, claim: str, node: str) -> None:
    """A bound claim of a local volume on a simulated node (class `local`, created if needed)."""
    if not kube.get(simulate.STORAGE_CLASSES, "", "local"):
        simulate.storage_class(kube, "local", LOCAL_VOLUMES, wait_for_consumer=True)
    simulate.bound_claim(
        kube,
        namespace,
        claim,
        "local",
        {"local": {"path": "/mnt/disks/data"}},
        node_affinity=simulate.hostname_affinity(node),
    )
    wait_bound_claim(kube, namespace, claim)
