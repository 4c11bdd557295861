"""A thin JSON transport over the official `kubernetes` client.

The generated typed models are slow to build for thousands of objects and use
snake_case names, while request bodies from the scheduler and the apiserver
are wire-format JSON. We keep every object as its wire-format dict, so we use
the client for configuration, authentication and connection pooling, and
speak JSON ourselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from kubernetes import client, config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    """One kind of object, as the API serves it."""

    group: str  # "" for the core group
    version: str
    plural: str
    namespace: str | None = None  # None: all namespaces (or a cluster-scoped kind)

    def collection_path(self) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespace:
            base += f"/namespaces/{quote(self.namespace)}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str, name: str) -> str:
        scoped = Resource(self.group, self.version, self.plural, namespace or None)
        return f"{scoped.collection_path()}/{quote(name)}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group or 'core'}/{self.version}"


NODES = Resource("", "v1", "nodes")
PODS = Resource("", "v1", "pods")
PVCS = Resource("", "v1", "persistentvolumeclaims")
PVS = Resource("", "v1", "persistentvolumes")
STORAGE_CLASSES = Resource("storage.k8s.io", "v1", "storageclasses")
CSI_NODES = Resource("storage.k8s.io", "v1", "csinodes")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
NAMESPACES = Resource("", "v1", "namespaces")
SERVICES = Resource("", "v1", "services")
ENDPOINTS = Resource("", "v1", "endpoints")
CONFIG_MAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
MUTATING = Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
VALIDATING = Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
WEBHOOK_CONFIGS = {"mutating": MUTATING, "validating": VALIDATING}


class ApiError(Exception):
    def __init__(self, status: int, body: bytes | str = b"") -> None:
        self.status = status
        self.body = body if isinstance(body, str) else body.decode("utf-8", "replace")
        super().__init__(f"API answered {status}: {self.body[:200]}")

    @property
    def gone(self) -> bool:
        return self.status == 410


def load_api_client(kubeconfig: str | None = None, user_agent: str = "stork-py") -> client.ApiClient:
    """A client from an explicit kubeconfig, else in-cluster, else the default kubeconfig.

    The user agent names the component in the apiserver's audit log (the RBAC test reads it).
    """
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg)
    # Callers decide about retries: caches back off and resume, request paths fail open.
    cfg.retries = 0
    api = client.ApiClient(cfg)
    api.user_agent = f"{user_agent}/0.1.0"
    return api


class Kube:
    """JSON requests against the apiserver: GET, LIST, WATCH, POST, PATCH, DELETE."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | tuple[float, float] = 10.0,
        stream: bool = False,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self.api_client.param_serialize(
            method,
            path,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api_client.call_api(*params, _request_timeout=timeout)
        if stream and 200 <= resp.status < 300:
            return resp.response
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, data or b"")
        return orjson.loads(data) if data else None

    def get(self, resource: Resource, namespace: str, name: str, timeout: float = 3.0) -> dict | None:
        """One object, or None when it does not exist. Short timeout: it may be on a request's path."""
        try:
            return self.request("GET", resource.object_path(namespace, name), timeout=timeout)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(self, resource: Resource, page_size: int = 500, field_selector: str = "") -> tuple[list[dict], str]:
        """Every object of a resource (paged) and the list's resourceVersion."""
        found: list[dict] = []
        versions = [""]
        for items, version in self.list_pages(resource, page_size, field_selector):
            found.extend(items)
            versions.append(version)
        return found, versions[-1]

    def list_pages(
        self, resource: Resource, page_size: int = 500, field_selector: str = ""
    ) -> Iterator[tuple[list[dict], str]]:
        """The objects of a resource one page at a time, each with the list's resourceVersion.

        A cache trims each page before the next arrives, so a large list never holds every
        object at full size at once (the peak would stay in the process as fragmented heap).
        """
        token: str | None = None
        while True:
            query = {"limit": page_size, "continue": token, "fieldSelector": field_selector or None}
            page = self.request("GET", resource.collection_path(), query, timeout=60)
            metadata = page.get("metadata") or {}
            yield page.get("items") or [], metadata.get("resourceVersion", "")
            token = metadata.get("continue")
            if not token:
                return

    def watch(
        self, resource: Resource, resource_version: str, timeout_seconds: int, field_selector: str = ""
    ) -> Iterator[dict]:
        """Watch events from resource_version; ends when the server closes the watch."""
        resp = self.request(
            "GET",
            resource.collection_path(),
            {
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": timeout_seconds,
                "fieldSelector": field_selector or None,
            },
            timeout=(10, timeout_seconds + 30),
            stream=True,
        )
        try:
            buffer = b""
            for chunk in resp.stream(amt=None, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)
        finally:
            resp.release_conn()

    def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> dict:
        scoped = Resource(resource.group, resource.version, resource.plural, namespace or None)
        return self.request("POST", scoped.collection_path(), body=body)

    def patch(
        self, resource: Resource, namespace: str, name: str, body: Mapping[str, Any], subresource: str = ""
    ) -> dict:
        """A JSON merge patch (RFC 7386), of the object or of a subresource such as `status`."""
        path = resource.object_path(namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def delete(self, resource: Resource, namespace: str, name: str, body: Any = None) -> Any:
        return self.request("DELETE", resource.object_path(namespace, name), body=body)
