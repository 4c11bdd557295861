"""Workloads and waits for end-to-end tests; every assertion reads what the API shows."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from storkcore.kube import PVCS, ApiError, Kube, Resource

PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
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


def pod_spec(claims: list[str], annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {}, "annotations": dict(annotations or {})},
        "spec": {
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
            "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)],
            "terminationGracePeriodSeconds": 0,
        },
    }


def create_deployment(
    kube: Kube, namespace: str, name: str, claims: list[str], annotations: Mapping[str, str] | None = None
) -> None:
    template = pod_spec(claims, annotations)
    template["metadata"]["labels"] = {"app": name}
    kube.create(
        DEPLOYMENTS,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
        },
    )


def create_pod(kube: Kube, namespace: str, name: str, claims: list[str], annotations=None) -> dict[str, Any]:
    body = pod_spec(claims, annotations)
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


def wait_bound_claim(kube: Kube, namespace: str, claim: str) -> None:
    """The PV controller binds pre-bound claims within a second or two; tests about
    placement start after that, so the scheduler's retry back-off does not slow them."""
    wait_for(
        lambda: (kube.get(PVCS, namespace, claim) or {}).get("status", {}).get("phase") == "Bound",
        60,
        f"PVC {namespace}/{claim} to be Bound",
    )


def events_for(kube: Kube, namespace: str, pod_name: str) -> list[dict[str, Any]]:
    found = kube.request(
        "GET", f"/api/v1/namespaces/{namespace}/events", {"fieldSelector": f"involvedObject.name={pod_name}"}
    )
    return found["items"]
