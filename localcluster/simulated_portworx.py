"""SIMULATED Portworx REST API: the calls stork-py's `pxd` driver makes, as Portworx answers them.

Written from the public openstorage REST API (the server Portworx runs on port
9001), not from any Portworx code:
- `GET /v1/cluster/enumerate`: the cluster (`Id`, `Name`, `Status`, `NodeId`,
  `Nodes`), nodes with Go's field names as keys (PascalCase) and `Status` as the
  number of the `api.Status` enum; time fields as RFC 3339 strings;
- `GET /v1/cluster/inspect/{id}`: one node; an unknown id answers 500 with the
  error text (Go's `http.Error`: `text/plain`, message and a newline);
- `GET /v1/osd-volumes?VolumeID=..&VolumeID=..`: a JSON array of the volumes
  found (unknown ids are left out, not an error); `?Name=n` filters by
  `locator.name`; `GET /v1/osd-volumes/{id}`: an array of one, or 404 text;
- volumes are protobuf messages encoded by encoding/json: snake_case keys,
  zero values left out (`omitempty`), enums as numbers;
- security on: `Authorization: bearer <JWT>` on every call; no token 401
  "Access denied token is empty", an issuer without an authenticator 401, a bad
  signature or a token without the `system.admin` role 403;
- an unknown route answers 404 "404 page not found".

State a test can change: nodes (status, labels, addresses), volumes and where
their replicas are, auth, latency and failures (see SimulatedServer).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import jwt
from flask import Flask, Response, request

from localcluster.simulated_http import SimulatedServer, SimulatedSystem

STATUS = {
    "STATUS_NONE": 0,
    "STATUS_INIT": 1,
    "STATUS_OK": 2,
    "STATUS_OFFLINE": 3,
    "STATUS_ERROR": 4,
    "STATUS_NOT_IN_QUORUM": 5,
    "STATUS_DECOMMISSION": 6,
    "STATUS_MAINTENANCE": 7,
    "STATUS_STORAGE_DOWN": 8,
    "STATUS_STORAGE_DEGRADED": 9,
    "STATUS_NEEDS_REBOOT": 10,
    "STATUS_STORAGE_REBALANCE": 11,
    "STATUS_STORAGE_DRIVE_REPLACE": 12,
    "STATUS_NOT_IN_QUORUM_NO_STORAGE": 13,
    "STATUS_POOLMAINTENANCE": 14,
}
SHAREDV4_SERVICE_TYPES = {"UNSPECIFIED": 0, "NODEPORT": 1, "CLUSTERIP": 2, "LOADBALANCER": 3, "NONE": 4}
ZERO_TIME = "0001-01-01T00:00:00Z"


def go_error(message: str, status: int) -> Response:
    """What Go's http.Error writes."""
    resp = Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def go_json(payload: Any) -> Response:
    """json.NewEncoder(w).Encode: compact JSON and a newline (Go sniffs no type for JSON; Portworx sets none)."""
    import json

    return Response(json.dumps(payload, separators=(",", ":")) + "\n", status=200, content_type="application/json")


class SimulatedPortworx(SimulatedSystem):
    """A Portworx cluster's REST API with state a test can change."""

    def __init__(self, tls: ssl.SSLContext | None = None, status_as_name: bool = False) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.status_as_name = status_as_name  # send "STATUS_OK" instead of 2
        self.auth: dict[str, str] = {}  # issuer -> shared secret; empty: security off
        self._lock = threading.Lock()
        self.server = SimulatedServer(self._app(), tls=tls)

    # -- state -----------------------------------------------------------------

    def add_node(
        self,
        node_id: str,
        scheduler_name: str = "",
        hostname: str = "",
        ip: str = "",
        status: str = "STATUS_OK",
        labels: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            self.nodes[node_id] = {
                "Id": node_id,
                "SchedulerNodeName": scheduler_name,
                "Cpu": 3.5,
                "CpuCores": 4,
                "MemTotal": 8 << 30,
                "MemUsed": 2 << 30,
                "MemFree": 6 << 30,
                "Avgload": 1,
                "Status": status,
                "GenNumber": 1,
                "Disks": {},
                "Pools": [],
                "MgmtIp": ip,
                "DataIp": ip,
                "Timestamp": ZERO_TIME,
                "StartTime": ZERO_TIME,
                "Hostname": hostname,
                "NodeData": None,
                "NodeLabels": dict(labels or {}),
                "SchedulerTopology": None,
                "HWType": 2,
            }

    def set_node_status(self, node_id: str, status: str) -> None:
        with self._lock:
            self.nodes[node_id]["Status"] = status

    def set_node_labels(self, node_id: str, labels: dict[str, str]) -> None:
        with self._lock:
            self.nodes[node_id]["NodeLabels"] = dict(labels)

    def remove_node(self, node_id: str) -> None:
        with self._lock:
            self.nodes.pop(node_id, None)

    def add_volume(
        self,
        volume_id: str,
        replicas: list[str],
        name: str = "",
        labels: dict[str, str] | None = None,
        spec_labels: dict[str, str] | None = None,
        sharedv4: bool = False,
        service_type: str | None = None,
    ) -> None:
        spec: dict[str, Any] = {"size": 1 << 30, "format": 2, "ha_level": len(replicas)}
        if spec_labels:
            spec["volume_labels"] = dict(spec_labels)
        if sharedv4:
            spec["sharedv4"] = True
        if service_type is not None:
            service = {"name": f"px-svc-{volume_id}"}
            if SHAREDV4_SERVICE_TYPES[service_type]:  # omitempty drops the zero value
                service["type"] = SHAREDV4_SERVICE_TYPES[service_type]
            spec["sharedv4_service_spec"] = service
        locator: dict[str, Any] = {"name": name or volume_id}
        if labels:
            locator["volume_labels"] = dict(labels)
        with self._lock:
            self.volumes[volume_id] = {
                "id": volume_id,
                "source": {},
                "locator": locator,
                "ctime": {"seconds": 1764200000},
                "spec": spec,
                "format": 2,
                "status": 2,
                "state": 4,
                "replica_sets": [{"nodes": list(replicas)}] if replicas else [],
            }

    def set_replicas(self, volume_id: str, replicas: list[str]) -> None:
        with self._lock:
            self.volumes[volume_id]["replica_sets"] = [{"nodes": list(replicas)}] if replicas else []

    def remove_volume(self, volume_id: str) -> None:
        with self._lock:
            self.volumes.pop(volume_id, None)

    def require_auth(self, issuer: str, secret: str) -> None:
        self.auth[issuer] = secret

    # -- wire format -----------------------------------------------------------

    def _node_json(self, node: dict[str, Any]) -> dict[str, Any]:
        out = dict(node)
        out["Status"] = node["Status"] if self.status_as_name else STATUS[node["Status"]]
        return out

    def _app(self) -> Flask:
        app = Flask("simulated-portworx")

        @app.before_request
        def check_token() -> Response | None:
            return self._check_token(request.headers.get("Authorization", ""))

        @app.get("/v1/cluster/enumerate")
        def enumerate_cluster() -> Response:
            with self._lock:
                nodes = [self._node_json(n) for n in self.nodes.values()]
            first = nodes[0]["Id"] if nodes else ""
            return go_json({"Id": "px-cluster", "Name": "px-cluster", "Status": 2, "NodeId": first, "Nodes": nodes})

        @app.get("/v1/cluster/inspect/<node_id>")
        def inspect_node(node_id: str) -> Response:
            with self._lock:
                node = self.nodes.get(node_id)
                if node is None:
                    return go_error(f"Unable to locate node with provided UUID {node_id}", 500)
                return go_json(self._node_json(node))

        @app.get("/v1/osd-volumes")
        def enumerate_volumes() -> Response:
            ids = request.args.getlist("VolumeID")
            name = request.args.get("Name")
            with self._lock:
                if ids:
                    found = [self.volumes[i] for i in ids if i in self.volumes]
                else:
                    found = [v for v in self.volumes.values() if name is None or v["locator"]["name"] == name]
                return go_json(found)

        @app.get("/v1/osd-volumes/<volume_id>")
        def inspect_volume(volume_id: str) -> Response:
            with self._lock:
                if volume_id not in self.volumes:
                    return go_error(f"Volume with ID: {volume_id} is not found", 404)
                return go_json([self.volumes[volume_id]])

        @app.errorhandler(404)
        def not_found(_: Exception) -> Response:
            return go_error("404 page not found", 404)

        return app

    def _check_token(self, header: str) -> Response | None:
        if not self.auth:
            return None
        parts = header.split(" ")
        if len(parts) < 2:
            return Response("Access denied token is empty", status=401, content_type="text/plain; charset=utf-8")
        token = parts[1]
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss", "")
        except jwt.PyJWTError as err:
            return _denied(401, f"Access denied, {err}")
        secret = self.auth.get(issuer)
        if secret is None:
            return _denied(401, f"Access denied, no authenticator for issuer {issuer}")
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=issuer)
        except jwt.PyJWTError as err:
            return _denied(403, f"Access denied, {err}")
        if "system.admin" not in (claims.get("roles") or []):
            return _denied(403, "Access denied, user must have admin access")
        return None


def _denied(status: int, message: str) -> Response:
    return Response(message, status=status, content_type="text/plain; charset=utf-8")
