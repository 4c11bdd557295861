"""SIMULATED LINSTOR controller REST API: the calls stork-py's `linstor` driver makes.

Written from LINSTOR's public REST API documentation (API v1), not from LINSTOR
code; checked in the tests with LINBIT's own client, `python-linstor`:
- `GET /v1/controller/version`: `version`, `git_hash`, `build_time`,
  `rest_api_version` (python-linstor reads it when it connects);
- `GET /v1/nodes[?nodes=N]`: a JSON array of nodes (`name`, `type`, `flags`,
  `props`, `net_interfaces[]`, `connection_status`, `uuid`, ...);
- `GET /v1/view/resources[?resources=R&nodes=N]`: a JSON array, one entry per
  resource and node (`name`, `node_name`, `props`, `flags`, `layer_object`,
  `state`, `uuid`, `create_timestamp`, `volumes[]` with `volume_number`,
  `storage_pool_name`, `provider_kind`, `device_path`, `allocated_size_kib`,
  `state.disk_state`); a satellite that is not connected has no `state`;
- `GET /v1/resource-definitions/{R}/resources`: the same entries for one
  resource, or 404 when the resource definition does not exist;
- `GET /v1/nodes/{N}`: one node, or 404 (`FAIL_NOT_FOUND_NODE`);
- `GET /v1/resource-definitions[?resource_definitions=R&with_volume_definitions=true]`
  and `GET /v1/resource-definitions/{R}`: resource definitions (`name`,
  `resource_group_name`, `flags`, `props`, `layer_data`, `uuid`,
  `volume_definitions` when asked), or 404 (`FAIL_NOT_FOUND_RSC_DFN`);
- `GET /v1/resource-definitions/{R}/volume-definitions[/{VNR}]`: volume
  definitions (`volume_number`, `size_kib`, `flags`, `props`, `layer_data`,
  `uuid`), or 404 (`FAIL_NOT_FOUND_RSC_DFN`, `FAIL_NOT_FOUND_VLM_DFN`);
- `GET /v1/controller/properties`: the controller's properties (a JSON object);
- errors: a JSON array of ApiCallRc objects (`ret_code` with the error mask,
  `message`, `cause`, `obj_refs`), `application/json`.

HTTPS with client certificates: pass an ssl.SSLContext that requires them.
State a test can change: nodes (connection status, properties), resources
(diskful, diskless, tie-breaker; disk state; flags), latency and failures.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Any

from flask import Flask, Response, request

from localcluster.simulated_http import SimulatedServer, SimulatedSystem

MASK_ERROR = -(1 << 62)  # 0xC000000000000000 as a signed 64-bit number
FAIL_NOT_FOUND_NODE = MASK_ERROR | 300
FAIL_NOT_FOUND_RSC_DFN = MASK_ERROR | 301
FAIL_NOT_FOUND_VLM_DFN = MASK_ERROR | 303
FAIL_UNKNOWN_ERROR = MASK_ERROR | 0xFFFF
DRBD_MINOR_BASE = 1000


def api_error(status: int, message: str, ret_code: int = FAIL_UNKNOWN_ERROR, **refs: str) -> Response:
    body = [
        {"ret_code": ret_code, "message": message, "obj_refs": refs}
        if refs
        else {"ret_code": ret_code, "message": message}
    ]
    return Response(json.dumps(body), status=status, content_type="application/json")


def _no_definition(name: str) -> Response:
    return api_error(404, f"Resource definition '{name}' not found.", FAIL_NOT_FOUND_RSC_DFN, RscDfn=name)


def _volume_definition_json(name: str, minor: int) -> dict[str, Any]:
    return {
        "volume_number": 0,
        "size_kib": 1048576,
        "flags": [],
        "props": {"DrbdCurrentGi": "0000000000000001"},
        "layer_data": [{"type": "DRBD", "data": {"volume_number": 0, "minor_number": minor}}],
        "uuid": f"vlmdfn-{name}-0",
    }


def _json(payload: Any) -> Response:
    return Response(json.dumps(payload), status=200, content_type="application/json")


class SimulatedLinstor(SimulatedSystem):
    """A LINSTOR controller's REST API with state a test can change."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        # (resource, node) -> {"kind": diskful|diskless|tiebreaker, "disk_state": str, "flags": [...]}
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.controller_props: dict[str, str] = {
            "DrbdOptions/auto-quorum": "io-error",
            "Autoplacer/Weights/MaxFreeSpace": "1",
        }
        self._lock = threading.Lock()
        self.server = SimulatedServer(self._app(), tls=tls)

    # -- state -----------------------------------------------------------------

    def add_node(
        self, name: str, ip: str = "", k8s_hostname: str = "", labels: dict[str, str] | None = None, online: bool = True
    ) -> None:
        props = {"CurStltConnName": "default", "NodeUname": name}
        if k8s_hostname:
            props["Aux/topology/kubernetes.io/hostname"] = k8s_hostname
        for key, value in (labels or {}).items():
            props[f"Aux/topology/{key}"] = value
        with self._lock:
            self.nodes[name] = {
                "name": name,
                "type": "SATELLITE",
                "flags": [],
                "props": props,
                "net_interfaces": [
                    {
                        "name": "default",
                        "address": ip or f"192.0.2.{len(self.nodes) + 1}",  # TEST-NET-1: matches no real node
                        "satellite_port": 3366,
                        "satellite_encryption_type": "PLAIN",
                        "is_active": True,
                        "uuid": f"netif-{name}",
                    }
                ],
                "connection_status": "ONLINE" if online else "OFFLINE",
                "uuid": f"node-{name}",
                "storage_providers": ["DISKLESS", "LVM_THIN"],
                "resource_layers": ["DRBD", "STORAGE"],
            }

    def set_node_labels(self, name: str, labels: dict[str, str]) -> None:
        """The node's `Aux/topology/<label>` properties (as piraeus copies them), replaced."""
        with self._lock:
            props = self.nodes[name]["props"]
            for key in [k for k in props if k.startswith("Aux/topology/") and not k.endswith("kubernetes.io/hostname")]:
                del props[key]
            props.update({f"Aux/topology/{k}": v for k, v in labels.items()})

    def set_connection(self, name: str, status: str) -> None:
        """ONLINE, OFFLINE, CONNECTED, ..."""
        with self._lock:
            self.nodes[name]["connection_status"] = status

    def add_resource(
        self, name: str, node: str, kind: str = "diskful", disk_state: str = "UpToDate", flags: list[str] | None = None
    ) -> None:
        assert kind in ("diskful", "diskless", "tiebreaker"), kind
        with self._lock:
            self.resources[(name, node)] = {"kind": kind, "disk_state": disk_state, "flags": list(flags or [])}

    def set_disk_state(self, name: str, node: str, disk_state: str) -> None:
        with self._lock:
            self.resources[(name, node)]["disk_state"] = disk_state

    def remove_resource(self, name: str, node: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self.resources if k[0] == name and (node is None or k[1] == node)]:
                del self.resources[key]

    def set_replicas(self, name: str, nodes: list[str]) -> None:
        """Diskful resources of `name` exactly on `nodes` (other kinds kept)."""
        with self._lock:
            for key in [k for k, r in self.resources.items() if k[0] == name and r["kind"] == "diskful"]:
                del self.resources[key]
            for node in nodes:
                self.resources[(name, node)] = {"kind": "diskful", "disk_state": "UpToDate", "flags": []}

    # -- wire format -----------------------------------------------------------

    def _resource_json(self, name: str, node: str, spec: dict[str, Any], minor: int) -> dict[str, Any]:
        diskless = spec["kind"] != "diskful"
        flags = (["DISKLESS", "DRBD_DISKLESS"] if diskless else []) + (
            ["TIE_BREAKER"] if spec["kind"] == "tiebreaker" else []
        )
        flags += spec["flags"]
        connected = self.nodes.get(node, {}).get("connection_status") == "ONLINE"
        volume: dict[str, Any] = {
            "volume_number": 0,
            "storage_pool_name": "DfltDisklessStorPool" if diskless else "lvm-thin",
            "provider_kind": "DISKLESS" if diskless else "LVM_THIN",
            "device_path": f"/dev/drbd{minor}",
            "allocated_size_kib": 0 if diskless else 1048576,
            "flags": [],
            "props": {},
            "uuid": f"vlm-{name}-{node}",
            "layer_data_list": [{"type": "DRBD"}, {"type": "STORAGE"}],
        }
        if connected:
            volume["state"] = {"disk_state": "Diskless" if diskless else spec["disk_state"]}
        entry: dict[str, Any] = {
            "name": name,
            "node_name": node,
            "props": {"StorPoolName": volume["storage_pool_name"]},
            "flags": flags,
            "layer_object": {
                "children": [{"type": "STORAGE", "storage": {"storage_volumes": []}}],
                "resource_name_suffix": "",
                "type": "DRBD",
                "drbd": {"drbd_resource_definition": {"resource_name_suffix": ""}, "node_id": 0, "connections": {}},
            },
            "uuid": f"rsc-{name}-{node}",
            "create_timestamp": int(time.time() * 1000),
            "volumes": [volume],
        }
        if connected:
            entry["state"] = {"in_use": False}
        return entry

    def _defined(self, name: str) -> bool:
        return any(r == name for r, _ in self.resources)

    def _definition_json(self, name: str, with_volumes: bool) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": name,
            "external_name": name,
            "resource_group_name": "sc-simulated",
            "flags": [],
            "props": {"DrbdOptions/Resource/quorum": "majority"},
            "layer_data": [
                {"type": "DRBD", "data": {"peer_slots": 7, "al_stripes": 1, "al_stripe_size_kib": 32, "port": 7000,
                                          "transport_type": "IP", "secret": "simulated", "down": False}},
                {"type": "STORAGE"},
            ],
            "uuid": f"rscdfn-{name}",
        }  # fmt: skip
        if with_volumes:
            found["volume_definitions"] = [_volume_definition_json(name, self._minor(name))]
        return found

    def _minors(self) -> dict[str, int]:
        """The DRBD minor of each resource: one per resource definition, in name order."""
        return {r: DRBD_MINOR_BASE + i for i, r in enumerate(sorted({r for r, _ in self.resources}))}

    def _minor(self, name: str) -> int:
        return self._minors()[name]

    def _entries(self, resources: list[str], nodes: list[str]) -> list[dict[str, Any]]:
        minors = self._minors()
        return [
            self._resource_json(r, n, spec, minors[r])
            for (r, n), spec in sorted(self.resources.items())
            if (not resources or r in resources) and (not nodes or n in nodes)
        ]

    def _app(self) -> Flask:
        app = Flask("simulated-linstor")

        @app.get("/v1/controller/version")
        def version() -> Response:
            return _json(
                {"version": "1.29.0", "git_hash": "simulated", "build_time": "2026-01-01T00:00:00+00:00",
                 "rest_api_version": "1.24.0"}
            )  # fmt: skip

        @app.get("/v1/nodes")
        def nodes() -> Response:
            wanted = request.args.getlist("nodes")
            with self._lock:
                return _json([n for name, n in sorted(self.nodes.items()) if not wanted or name in wanted])

        @app.get("/v1/view/resources")
        def view_resources() -> Response:
            with self._lock:
                return _json(self._entries(request.args.getlist("resources"), request.args.getlist("nodes")))

        @app.get("/v1/nodes/<name>")
        def node(name: str) -> Response:
            with self._lock:
                found = self.nodes.get(name)
                if found is None:
                    return api_error(404, f"Node '{name}' not found.", FAIL_NOT_FOUND_NODE, Node=name)
                return _json(found)

        @app.get("/v1/controller/properties")
        def controller_properties() -> Response:
            return _json(dict(self.controller_props))

        @app.get("/v1/resource-definitions")
        def resource_definitions() -> Response:
            wanted = request.args.getlist("resource_definitions")
            with_volumes = request.args.get("with_volume_definitions") == "true"
            with self._lock:
                names = sorted({r for r, _ in self.resources})
                return _json([self._definition_json(n, with_volumes) for n in names if not wanted or n in wanted])

        @app.get("/v1/resource-definitions/<name>")
        def resource_definition(name: str) -> Response:
            with self._lock:
                if not self._defined(name):
                    return _no_definition(name)
                return _json(self._definition_json(name, with_volumes=False))

        @app.get("/v1/resource-definitions/<name>/volume-definitions")
        def volume_definitions(name: str) -> Response:
            with self._lock:
                if not self._defined(name):
                    return _no_definition(name)
                return _json([_volume_definition_json(name, self._minor(name))])

        @app.get("/v1/resource-definitions/<name>/volume-definitions/<int:number>")
        def volume_definition(name: str, number: int) -> Response:
            with self._lock:
                if not self._defined(name):
                    return _no_definition(name)
                if number != 0:  # every simulated resource has one volume, number 0
                    message = f"Volume definition '{number}' of resource definition '{name}' not found."
                    return api_error(404, message, FAIL_NOT_FOUND_VLM_DFN, RscDfn=name, VlmNr=str(number))
                return _json(_volume_definition_json(name, self._minor(name)))

        @app.get("/v1/resource-definitions/<name>/resources")
        def resources_of(name: str) -> Response:
            with self._lock:
                if not self._defined(name):
                    return _no_definition(name)
                return _json(self._entries([name], []))

        @app.errorhandler(404)
        def not_found(_: Exception) -> Response:
            return api_error(404, f"Path {request.path} not found")

        return app
