"""`pxd`: Portworx, over its REST API (default port 9001, JSON).

Facts from Portworx/openstorage's REST API that this follows:
- `GET /v1/cluster/enumerate` answers a cluster object whose `Nodes` are nodes
  with PascalCase keys (`Id`, `SchedulerNodeName`, `Hostname`, `MgmtIp`,
  `DataIp`, `Status`, `NodeLabels`); `GET /v1/cluster/inspect/{id}` answers one
  node (an unknown id is an error: HTTP 500 with the message as plain text);
- `GET /v1/osd-volumes?VolumeID=a&VolumeID=b` answers a JSON array of the
  volumes it found (ids it does not know are left out), `?Name=n` looks a volume
  up by `locator.name`; volume keys are snake_case;
- statuses are the `api.Status` enum, sent as its number by Go's JSON encoder
  (some gateways send the `STATUS_*` name; both are accepted);
- with security on, every request carries `Authorization: bearer <JWT>`; a
  missing token is 401, a token that fails verification or lacks the
  `system.admin` role is 403.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import jwt

from storkcore import objects
from storkcore.cluster import ClusterState
from storkcore.drivers.base import DriverOptions
from storkcore.drivers.external import (
    UNKNOWN,
    ExternalDriver,
    HttpApi,
    StorageApiError,
    StorageUnreachable,
    VolumeFacts,
)
from storkcore.kube import Resource
from storkcore.model import NodeStatus, StorageNode

PROVISIONERS = frozenset({"kubernetes.io/portworx-volume", "pxd.portworx.com", "com.openstorage.pxd"})
DEFAULT_PORT = 9001
SERVICE_NAMESPACE, SERVICE_NAME, SERVICE_PORT_NAME = "kube-system", "portworx-service", "px-api"
SERVICES = Resource("", "v1", "services", SERVICE_NAMESPACE)
TOKEN_LIFETIME = 3600.0  # seconds; renewed when less than a tenth is left

# api.Status: name by number.
STATUS_NAMES = {
    0: "STATUS_NONE",
    1: "STATUS_INIT",
    2: "STATUS_OK",
    3: "STATUS_OFFLINE",
    4: "STATUS_ERROR",
    5: "STATUS_NOT_IN_QUORUM",
    6: "STATUS_DECOMMISSION",
    7: "STATUS_MAINTENANCE",
    8: "STATUS_STORAGE_DOWN",
    9: "STATUS_STORAGE_DEGRADED",
    10: "STATUS_NEEDS_REBOOT",
    11: "STATUS_STORAGE_REBALANCE",
    12: "STATUS_STORAGE_DRIVE_REPLACE",
    13: "STATUS_NOT_IN_QUORUM_NO_STORAGE",
    14: "STATUS_POOLMAINTENANCE",
}
_STATUS_MAP = {
    "STATUS_OK": NodeStatus.ONLINE,
    "STATUS_NONE": NodeStatus.ONLINE,
    "STATUS_STORAGE_DOWN": NodeStatus.STORAGE_DOWN,
    "STATUS_POOLMAINTENANCE": NodeStatus.STORAGE_DOWN,
    "STATUS_STORAGE_DEGRADED": NodeStatus.DEGRADED,
    "STATUS_STORAGE_REBALANCE": NodeStatus.DEGRADED,
    "STATUS_STORAGE_DRIVE_REPLACE": NodeStatus.DEGRADED,
}
# Sharedv4ServiceSpec.ServiceType NONE: a sharedv4 volume served without a service.
SHAREDV4_SERVICE_NONE = ("NONE", 4)


def status_name(raw: Any) -> str:
    if isinstance(raw, bool):
        return ""
    if isinstance(raw, int):
        return STATUS_NAMES.get(raw, f"STATUS_{raw}")
    return raw if isinstance(raw, str) else ""


def px_node_status(raw: Any) -> NodeStatus:
    return _STATUS_MAP.get(status_name(raw), NodeStatus.OFFLINE)


def px_volume_facts(volume: Mapping[str, Any]) -> VolumeFacts:
    spec = objects.mapping(volume, "spec")
    labels = {
        **_strings(objects.mapping(volume, "locator", "volume_labels")),
        **_strings(objects.mapping(spec, "volume_labels")),
    }
    data_nodes = {n for rs in objects.items(volume, "replica_sets") for n in objects.items(rs, "nodes")}
    service = spec.get("sharedv4_service_spec")
    served = (
        bool(spec.get("sharedv4")) and isinstance(service, Mapping) and service.get("type") not in SHAREDV4_SERVICE_NONE
    )
    return VolumeFacts(
        id=objects.text(volume, "id"),
        data_nodes=tuple(sorted(n for n in data_nodes if isinstance(n, str) and n)),
        labels=labels,
        needs_anti_hyperconvergence=served,
        windows=labels.get("winshare") == "true",
    )


def _strings(source: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in source.items() if isinstance(k, str) and isinstance(v, str)}


class PortworxApi(HttpApi):
    """The REST client: a bearer JWT (HS256, from the shared secret) on every request when configured."""

    def __init__(self, base_url: str, timeout: float, ca_file: str, secret: str, issuer: str) -> None:
        super().__init__(base_url, timeout, ca_file=ca_file)
        self.secret, self.issuer = secret, issuer
        self._token = ""
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.secret:
            headers["Authorization"] = "bearer " + self.token()
        return headers

    def token(self) -> str:
        with self._token_lock:
            now = time.time()
            if now > self._token_expires - TOKEN_LIFETIME / 10:
                claims = {
                    "iss": self.issuer,
                    "sub": "stork-py",
                    "name": "stork-py",
                    "email": "stork-py@localhost",
                    "roles": ["system.admin"],
                    "groups": ["*"],
                    "iat": int(now),
                    "exp": int(now + TOKEN_LIFETIME),
                }
                self._token = jwt.encode(claims, self.secret, algorithm="HS256")
                self._token_expires = now + TOKEN_LIFETIME
            return self._token


class PortworxDriver(ExternalDriver):
    name = "pxd"
    UPSTREAM_RACK_LABEL = "px/rack"

    def __init__(self, cluster: ClusterState, options: DriverOptions) -> None:
        super().__init__(cluster, options)
        self._api: PortworxApi | None = None
        self._api_lock = threading.Lock()

    @property
    def provisioners(self) -> frozenset[str]:
        return PROVISIONERS

    # -- the API -------------------------------------------------------------

    @property
    def api(self) -> PortworxApi:
        with self._api_lock:
            if self._api is None:
                self._api = PortworxApi(
                    self._endpoint(),
                    self.options.api_timeout,
                    ca_file=self.options.px_ca_file,
                    secret=self.options.px_shared_secret or os.environ.get("PX_SHARED_SECRET", ""),
                    issuer=self.options.px_jwt_issuer or os.environ.get("PX_JWT_ISSUER", "stork.openstorage.io"),
                )
            return self._api

    def _endpoint(self) -> str:
        """--px-endpoint, else PX_ENDPOINT + PX_API_PORT, else the px-api port of portworx-service."""
        if self.options.px_endpoint:
            return self.options.px_endpoint
        scheme = "https" if self.options.px_ca_file else "http"
        host = os.environ.get("PX_ENDPOINT", "")
        if host:
            if "://" in host:
                return host
            return f"{scheme}://{host}:{os.environ.get('PX_API_PORT', DEFAULT_PORT)}"
        service = self.fresh(SERVICES, SERVICE_NAMESPACE, SERVICE_NAME)
        if service is None:
            raise StorageApiError(
                f"no Portworx endpoint: set --px-endpoint or PX_ENDPOINT, or create {SERVICE_NAMESPACE}/{SERVICE_NAME}"
            )
        port = next(
            (p.get("port") for p in objects.items(service, "spec", "ports") if p.get("name") == SERVICE_PORT_NAME),
            DEFAULT_PORT,
        )
        cluster_ip = objects.text(service, "spec", "clusterIP")
        host = cluster_ip if cluster_ip and cluster_ip != "None" else f"{SERVICE_NAME}.{SERVICE_NAMESPACE}"
        return f"{scheme}://{host}:{port}"

    def api_calls(self) -> Counter[tuple[str, str]]:
        return self._api.calls if self._api is not None else Counter()

    # -- nodes ---------------------------------------------------------------

    def _list_nodes(self) -> list[StorageNode]:
        cluster = self.api.get("cluster_enumerate", "/v1/cluster/enumerate")
        return [self._storage_node(n) for n in objects.items(cluster, "Nodes") if objects.text(n, "Id")]

    def _inspect_node(self, storage_id: str) -> StorageNode | None:
        try:
            node = self.api.get("cluster_inspect", f"/v1/cluster/inspect/{storage_id}")
        except StorageUnreachable:
            raise
        except StorageApiError:
            # The API answers an unknown id with an error (500); the listing tells it apart.
            if storage_id not in {n.storage_id for n in self._list_nodes()}:
                return None
            raise
        return self._storage_node(node) if objects.text(node, "Id") else None

    def _storage_node(self, node: Mapping[str, Any]) -> StorageNode:
        ips = tuple(dict.fromkeys(ip for ip in (objects.text(node, "MgmtIp"), objects.text(node, "DataIp")) if ip))
        return StorageNode(
            storage_id=objects.text(node, "Id"),
            scheduler_id=objects.text(node, "SchedulerNodeName"),
            hostname=objects.text(node, "Hostname"),
            status=px_node_status(node.get("Status")),
            ips=ips,
            topology=self.topology_of(objects.mapping(node, "NodeLabels")),
        )

    # -- volumes -------------------------------------------------------------

    def _volume_id(self, pv: Mapping[str, Any]) -> str:
        return (
            objects.text(pv, "spec", "portworxVolume", "volumeID")
            or objects.text(pv, "spec", "csi", "volumeHandle")
            or objects.name(pv)
        )

    def _fetch_volumes(self, volume_ids: Mapping[str, str], timeout: float) -> dict[str, VolumeFacts]:
        deadline = time.monotonic() + timeout  # one budget for the lookup by id and any by name
        answer = self.api.get(
            "volume_inspect", "/v1/osd-volumes", params=[("VolumeID", v) for v in volume_ids], timeout=timeout
        )
        found = {f.id: f for f in (px_volume_facts(v) for v in _volume_list(answer)) if f.id}
        for missing in [v for v in volume_ids if v not in found]:
            # A PV whose id the API does not know is looked up by its name (locator.name).
            pv_name = volume_ids[missing] or missing
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageApiError(f"osd-volumes: no time left to look {pv_name} up by name")
            by_name = _volume_list(self.api.get("volume_by_name", "/v1/osd-volumes", [("Name", pv_name)], left))
            found[missing] = px_volume_facts(by_name[0]) if by_name else UNKNOWN
        return found


def _volume_list(answer: Any) -> list[Mapping[str, Any]]:
    if answer is None:  # Go encodes an empty nil slice as null
        return []
    if not isinstance(answer, list):
        raise StorageApiError("osd-volumes: expected a JSON array")
    return [v for v in answer if isinstance(v, Mapping)]
