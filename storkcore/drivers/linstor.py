"""`linstor`: LINSTOR (piraeus), over the LINSTOR controller's REST API.

Facts from the LINSTOR REST API (v1) that this follows:
- `GET /v1/nodes` answers a JSON array of nodes: `name`, `type`,
  `connection_status` (`ONLINE`, `OFFLINE`, `CONNECTED`, ...), `props`,
  `net_interfaces[].address`; `?nodes=N` filters by name;
- `GET /v1/view/resources?resources=R&resources=S` answers a JSON array with one
  entry per resource and node: `name`, `node_name`, `flags`, `layer_object`
  (`type`, `children`), `state.in_use`, `volumes[].state.disk_state`; a
  satellite that is not connected reports no `state`;
- errors are a JSON array of ApiCallRc objects (`ret_code`, `message`, ...);
- HTTP on 3370; HTTPS on 3371, where the controller may require client certificates;
- piraeus copies Kubernetes node labels into `Aux/topology/<label>` node properties.

Why plain HTTP and not LINBIT's `python-linstor`: its client keeps one
`http.client` connection that threads must not share, opens it with extra
round trips (an HTTPS probe and a version call), and bounds each socket
operation rather than the whole call; the driver needs one deadline per call
from request threads and a background thread. The tests use `python-linstor`
against the simulated controller to check that the wire format is LINSTOR's.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

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
from storkcore.model import NodeStatus, StorageNode

PROVISIONER = "linstor.csi.linbit.com"
DEFAULT_CONTROLLER = "http://linstor-controller:3370"
HOSTNAME_PROP = "Aux/topology/kubernetes.io/hostname"
TOPOLOGY_PREFIX = "Aux/topology/"
NOT_A_REPLICA = frozenset({"DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER", "DELETE", "INACTIVE", "EVICTED"})


def controller_urls(spec: str) -> list[str]:
    """`LS_CONTROLLERS` style: comma-separated; `linstor://` is HTTP on 3370, `linstor+ssl://` HTTPS on 3371."""
    urls = []
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        if "://" not in raw:
            raw = "linstor://" + raw
        parts = urlsplit(raw)
        secure = parts.scheme in ("https", "linstor+ssl")
        port = parts.port or (3371 if secure else 3370)
        urls.append(f"{'https' if secure else 'http'}://{parts.hostname}:{port}")
    return urls


def is_replica(resource: Mapping[str, Any]) -> bool:
    """A diskful copy of the data (SPEC §2): not diskless or tie-breaker, not being
    deleted or evicted, with volumes, and UpToDate wherever DRBD reports a state."""
    flags = set(objects.items(resource, "flags"))
    volumes = objects.items(resource, "volumes")
    if flags & NOT_A_REPLICA or not volumes:
        return False
    if "state" not in resource:  # its satellite is not connected: a replica on an Offline node
        return True
    if not _has_drbd(objects.mapping(resource, "layer_object")):
        return True
    return all(objects.text(v, "state", "disk_state") == "UpToDate" for v in volumes)


def _has_drbd(layer: Mapping[str, Any]) -> bool:
    return layer.get("type") == "DRBD" or any(_has_drbd(c) for c in objects.items(layer, "children"))


def resource_name(volume_handle: str) -> str:
    """A CSI volume handle `rsc/vnr` names resource `rsc`."""
    return volume_handle.split("/", 1)[0]


class LinstorApi:
    """Tries each controller in turn; the one that answered is asked first next time."""

    def __init__(self, urls: Iterable[str], timeout: float, ca_file: str, client_cert: tuple[str, str] | None) -> None:
        self.clients = [HttpApi(u, timeout, ca_file=ca_file, client_cert=client_cert) for u in urls]
        self._first = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> Counter[tuple[str, str]]:
        total: Counter[tuple[str, str]] = Counter()
        for client in self.clients:
            total.update(client.calls)
        return total

    def get(self, call: str, path: str, params: list[tuple[str, str]], timeout: float | None = None) -> Any:
        order = self.clients[self._first :] + self.clients[: self._first]
        last: StorageUnreachable | None = None
        for client in order:
            try:
                answer = client.get(call, path, params, timeout)
            except StorageUnreachable as err:  # an answer, even an error, is not a failover case
                last = err
                continue
            with self._lock:
                self._first = self.clients.index(client)
            return answer
        raise last or StorageApiError("no LINSTOR controller configured")


class LinstorDriver(ExternalDriver):
    name = "linstor"
    UPSTREAM_RACK_LABEL = "linstor/rack"

    def __init__(self, cluster: ClusterState, options: DriverOptions) -> None:
        super().__init__(cluster, options)
        spec = options.linstor_controllers or os.environ.get("LS_CONTROLLERS", "") or DEFAULT_CONTROLLER
        urls = controller_urls(spec)
        if not urls:
            raise ValueError(f"no LINSTOR controller in {spec!r}")
        cert = options.linstor_client_cert or _pem_file(os.environ.get("LS_USER_CERTIFICATE", ""))
        key = options.linstor_client_key or _pem_file(os.environ.get("LS_USER_KEY", ""))
        self.api = LinstorApi(
            urls,
            options.api_timeout,
            ca_file=options.linstor_ca_file or _pem_file(os.environ.get("LS_ROOT_CA", "")),
            client_cert=(cert, key) if cert and key else None,
        )

    @property
    def provisioners(self) -> frozenset[str]:
        return frozenset({PROVISIONER})

    def api_calls(self) -> Counter[tuple[str, str]]:
        return self.api.calls

    # -- nodes ---------------------------------------------------------------

    def _list_nodes(self) -> list[StorageNode]:
        return [self._storage_node(n) for n in _array(self.api.get("nodes", "/v1/nodes", []), "nodes")]

    def _inspect_node(self, storage_id: str) -> StorageNode | None:
        found = _array(self.api.get("node", "/v1/nodes", [("nodes", storage_id)]), "nodes")
        return self._storage_node(found[0]) if found else None

    def _storage_node(self, node: Mapping[str, Any]) -> StorageNode:
        name = objects.text(node, "name")
        props = objects.mapping(node, "props")
        online = objects.text(node, "connection_status") == "ONLINE"
        labels = {k[len(TOPOLOGY_PREFIX) :]: v for k, v in props.items() if k.startswith(TOPOLOGY_PREFIX)}
        addresses = (objects.text(i, "address") for i in objects.items(node, "net_interfaces"))
        return StorageNode(
            storage_id=name,
            scheduler_id=objects.text(props, HOSTNAME_PROP) or name,
            hostname=name,
            status=NodeStatus.ONLINE if online else NodeStatus.OFFLINE,
            ips=tuple(dict.fromkeys(a for a in addresses if a)),
            topology=self.topology_of(labels),
        )

    # -- volumes -------------------------------------------------------------

    def _volume_id(self, pv: Mapping[str, Any]) -> str:
        return resource_name(objects.text(pv, "spec", "csi", "volumeHandle") or objects.name(pv))

    def _fetch_volumes(self, volume_ids: Mapping[str, str], timeout: float) -> dict[str, VolumeFacts]:
        params = [("resources", r) for r in volume_ids]
        entries = _array(self.api.get("view_resources", "/v1/view/resources", params, timeout), "view/resources")
        holders: dict[str, set[str]] = {r: set() for r in volume_ids}
        known: set[str] = set()
        for entry in entries:
            rsc = objects.text(entry, "name")
            known.add(rsc)
            if rsc in holders and is_replica(entry):
                holders[rsc].add(objects.text(entry, "node_name"))
        return {
            rsc: VolumeFacts(id=rsc, data_nodes=tuple(sorted(nodes))) if rsc in known else UNKNOWN
            for rsc, nodes in holders.items()
        }


def _pem_file(value: str) -> str:
    """linstor-csi's LS_* variables hold PEM text; a path is taken as it is."""
    if not value.lstrip().startswith("-----BEGIN"):
        return value
    handle, path = tempfile.mkstemp(prefix="stork-linstor-", suffix=".pem")
    with os.fdopen(handle, "w") as out:
        out.write(value)
    return path


def _array(answer: Any, what: str) -> list[Mapping[str, Any]]:
    if not isinstance(answer, list):
        raise StorageApiError(f"{what}: expected a JSON array")
    return [e for e in answer if isinstance(e, Mapping)]
