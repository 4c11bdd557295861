"""What drivers over an external storage API share (SPEC §2, "off the hot path").

`pxd` and `linstor` read their storage system over HTTP. Requests that the
scheduler or the apiserver wait on must not: the storage nodes are listed by a
background thread (every `node_interval`, and soon after a volume names a node
that is not known), each volume is fetched once on first use and then refreshed
in the background in batches (each at most every `volume_interval`).

On the request path:
- a cached volume costs no storage call;
- an unknown volume costs one fetch, bounded by the storage budget; concurrent
  requests for the same volume share it;
- while the storage API is failing, a miss raises DriverError at once (the
  extender then fails open) instead of waiting again; the background thread
  keeps retrying and the answer is used as soon as it loads.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import requests
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from storkcore import claims, objects
from storkcore.cache import Store
from storkcore.cluster import ClusterState
from storkcore.drivers.base import Driver, DriverOptions
from storkcore.kube import NODES
from storkcore.matching import NodeIndex, TopologyLabels
from storkcore.model import DriverError, StorageNode, Topology, Volume

log = logging.getLogger("stork.driver")

BATCH = 50  # volumes per background refresh request
IDLE_REFRESHES = 10  # a volume no request asked for in this many refresh intervals is forgotten


class StorageApiError(DriverError):
    """The storage API did not answer, or answered with an error."""


class StorageUnreachable(StorageApiError):
    """No answer at all (connection refused, TLS failure, timeout): another endpoint may do."""


@dataclass(frozen=True)
class VolumeFacts:
    """What the storage system says about one volume (labels from the class and
    claim are added per request)."""

    id: str
    data_nodes: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    needs_anti_hyperconvergence: bool = False
    windows: bool = False


UNKNOWN = VolumeFacts(id="")  # the storage system does not know the volume: no replicas


@dataclass
class _Entry:
    facts: VolumeFacts | None = None  # None until the first successful fetch
    fetched_at: float = 0.0
    error: str = ""
    pv_name: str = ""  # the PV it was asked for by (Portworx looks unknown ids up by this name)
    used_at: float = field(default_factory=time.monotonic)  # last asked for by a request


class HttpApi:
    """A small JSON-over-HTTP client with one deadline per call and call counting."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        ca_file: str = "",
        client_cert: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        # Per request: a session-wide setting would lose to REQUESTS_CA_BUNDLE from the environment.
        self.verify: str | bool = ca_file or True
        self.cert = client_cert
        self.calls: Counter[tuple[str, str]] = Counter()  # (call, result)

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    def get(self, call: str, path: str, params: Sequence[tuple[str, str]] = (), timeout: float | None = None) -> Any:
        try:
            resp = self.session.get(
                self.base_url + path,
                params=list(params),
                headers=self.headers(),
                timeout=timeout or self.timeout,
                verify=self.verify,
                cert=self.cert,
            )
        except requests.RequestException as err:
            self.calls[(call, "unreachable")] += 1
            raise StorageUnreachable(f"{call}: {self.base_url} unreachable: {_short(err)}") from err
        if resp.status_code >= 400:
            self.calls[(call, str(resp.status_code))] += 1
            raise StorageApiError(f"{call}: HTTP {resp.status_code}: {resp.text.strip()[:300]}")
        try:
            body = resp.json()
        except ValueError as err:
            self.calls[(call, "bad_body")] += 1
            raise StorageApiError(f"{call}: the answer is not JSON") from err
        self.calls[(call, "ok")] += 1
        self.calls.setdefault((call, "unreachable"), 0)  # a call's outage series exists from its first answer, at 0
        return body


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) < 200 else text[:200] + "..."


class ExternalDriver(Driver):
    """A driver whose nodes and volumes come from a storage API, kept in memory.

    A storage node's topology is read from the Kubernetes Node it matches (SPEC §2, as upstream
    reads it), with upstream's rack key for the driver understood too; the storage system's
    own node labels only fill in a level the Kubernetes node lacks.
    """

    UPSTREAM_RACK_LABEL: ClassVar[str] = ""  # upstream Stork's rack label on Kubernetes nodes

    def __init__(self, cluster: ClusterState, options: DriverOptions) -> None:
        super().__init__(cluster, options)
        rack_keys = tuple(
            dict.fromkeys(
                [*options.topology.rack, self.UPSTREAM_RACK_LABEL]
                if self.UPSTREAM_RACK_LABEL
                else options.topology.rack
            )
        )
        self._node_topology = TopologyLabels(zone=options.topology.zone, region=options.topology.region, rack=rack_keys)
        self._k8s_nodes = cluster.store(NODES)
        self._api_index = NodeIndex(())  # the latest listing, for matching Kubernetes nodes to it
        self._k8s_name: dict[str, str] = {}  # storage id -> the Kubernetes node it matches
        self._k8s_nodes.add_listener(self._on_k8s_node)
        self._api_nodes: dict[str, StorageNode] = {}  # latest listing, by storage id
        self._volumes: dict[str, _Entry] = {}
        self._volumes_lock = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nodes_listed_at = 0.0
        self._nodes_wanted = True
        self._asked_about: set[str] = set()  # unknown node ids that already brought a listing
        self._api_down_until = 0.0
        self._last_error = ""
        self._volumes_version = 0  # bumped when any volume's facts change
        self.answered = threading.Event()  # the storage API has answered at least once
        self.refreshes: Counter[tuple[str, str]] = Counter()  # (kind, result)
        self.last_refresh: dict[str, float] = {}  # kind -> wall time of the last success

    # -- what a concrete driver provides -------------------------------------

    @abstractmethod
    def _list_nodes(self) -> list[StorageNode]:
        """Every storage node, from the API."""

    @abstractmethod
    def _inspect_node(self, storage_id: str) -> StorageNode | None:
        """One storage node, from the API; None when it does not know the node."""

    @abstractmethod
    def _fetch_volumes(self, volume_ids: Mapping[str, str], timeout: float) -> dict[str, VolumeFacts]:
        """Facts for each id (mapped to the name of its PV); an id the storage system does not
        know maps to UNKNOWN."""

    @abstractmethod
    def _volume_id(self, pv: Mapping[str, Any]) -> str:
        """The storage system's id for the volume behind a PV."""

    @abstractmethod
    def api_calls(self) -> Counter[tuple[str, str]]:
        """Storage API calls made so far, by (call, result)."""

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def ready(self) -> bool:
        return self.answered.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self.answered.wait(timeout)

    def state_version(self) -> tuple[int, ...]:
        return (self.generation, self._volumes_version)

    def refresh_now(self) -> None:
        """One synchronous round of background work (tests and one-shot commands)."""
        self._refresh_nodes()
        self._refresh_volumes(force=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if now - self._nodes_listed_at >= self.options.node_refresh_interval:
                self._refresh_nodes()
            elif self._nodes_wanted:
                self._refresh_nodes(on_schedule=False)
            self._refresh_volumes()
            self._wake.wait(timeout=min(1.0, self.options.node_refresh_interval))
            self._wake.clear()

    # -- nodes ---------------------------------------------------------------

    def _refresh_nodes(self, on_schedule: bool = True) -> None:
        self._nodes_wanted = False
        if on_schedule:
            self._asked_about = set()
        try:
            listed = self._list_nodes()
        except StorageApiError as err:
            self._note_failure("nodes", err)
            return
        finally:
            self._nodes_listed_at = time.monotonic()
        self._note_success("nodes")
        fresh = {node.storage_id: node for node in listed}
        index = NodeIndex(fresh.values())
        matched: dict[str, str] = {}
        for k8s_node in self._k8s_nodes.list():
            found = index.match(k8s_node)
            if found is not None:
                matched.setdefault(found.storage_id, objects.name(k8s_node))
        with self._nodes_lock:
            gone = set(self._api_nodes) - set(fresh)
            self._api_nodes, self._api_index, self._k8s_name = fresh, index, matched
            for storage_id in [*fresh, *gone]:
                self._refresh(storage_id)

    def _on_k8s_node(self, old: dict | None, new: dict | None) -> None:
        """A Kubernetes node changed: the storage node it matches may have a new topology."""
        node = new if new is not None else old
        with self._nodes_lock:
            found = self._api_index.match(node)
            if found is None:
                return
            if new is None:
                self._k8s_name.pop(found.storage_id, None)
            else:
                self._k8s_name.setdefault(found.storage_id, objects.name(new))
            self._refresh(found.storage_id)

    def _node_sources(self) -> Sequence[Store]:
        return ()

    def _source_names(self) -> Iterable[str]:
        return list(self._api_nodes)

    def _derive_node(self, source_name: str) -> StorageNode | None:
        listed = self._api_nodes.get(source_name)
        if listed is None:
            return None
        k8s_node = self._k8s_nodes.get("", self._k8s_name.get(source_name, ""))
        return replace(listed, topology=self._topology(k8s_node, listed.topology))

    def _topology(self, k8s_node: Mapping[str, Any] | None, own: Topology) -> Topology:
        """The Kubernetes node's levels; the storage system's fill in the ones it lacks."""
        labelled = self._node_topology.of(k8s_node) if k8s_node is not None else Topology()
        return Topology(
            region=labelled.region or own.region, zone=labelled.zone or own.zone, rack=labelled.rack or own.rack
        )

    def _fresh_node(self, storage_id: str) -> StorageNode | None:
        try:
            found = self._inspect_node(storage_id)
            if found is None:
                return None
            k8s_node = self._k8s_nodes.get("", self._k8s_name.get(storage_id, ""))
            return replace(found, topology=self._topology(k8s_node, found.topology))
        except StorageApiError as err:
            raise DriverError(f"{self.name}: cannot read node {storage_id}: {err}") from err

    def _want_nodes(self, unknown: set[str]) -> None:
        """A volume named nodes we do not know: list nodes soon (not on this request), once
        per unknown node until the next scheduled listing (a node the listing does not have
        either must not bring a listing a second)."""
        if unknown - self._asked_about and not self._nodes_wanted:
            self._asked_about |= unknown
            self._nodes_wanted = True
            self._wake.set()

    def topology_of(self, labels: Mapping[str, Any]) -> Topology:
        return self.options.topology.of({"metadata": {"labels": dict(labels)}})

    # -- volumes -------------------------------------------------------------

    def volume(self, pvc: Any, wait: bool = True) -> Volume | None:
        pv = claims.bound_pv(self.cluster, pvc)
        if pv is None:
            return None
        volume_id = self._volume_id(pv)
        facts = self._facts(volume_id, objects.name(pv), wait)
        unknown_nodes = {n for n in facts.data_nodes if n not in self._api_nodes}
        if unknown_nodes and self._api_nodes:
            self._want_nodes(unknown_nodes)
        sc = claims.storage_class_of(self.cluster, pvc)
        labels = {**facts.labels, **claims.volume_labels(sc, pvc)}
        return Volume(
            id=facts.id or volume_id,
            claim=claims.claim_id(pvc),
            data_nodes=facts.data_nodes,
            labels=labels,
            needs_anti_hyperconvergence=facts.needs_anti_hyperconvergence,
            windows=facts.windows or claims.is_windows_fs(sc, pv),
        )

    def cached_volume(self, pvc: Any) -> Volume | None:
        return self.volume(pvc, wait=False)

    def _facts(self, volume_id: str, pv_name: str, wait: bool = True) -> VolumeFacts:
        with self._volumes_lock:
            entry = self._volumes.get(volume_id)
            if entry is not None:
                entry.used_at = time.monotonic()
                if entry.facts is not None:
                    return entry.facts
            else:
                entry = self._volumes[volume_id] = _Entry(pv_name=pv_name)
            if not wait:  # the background thread loads it; this caller does not wait for the API
                self._wake.set()
                raise DriverError(f"{self.name}: volume {volume_id} not loaded yet (loading in the background)")
            if time.monotonic() < self._api_down_until:
                raise DriverError(f"{self.name}: storage API unavailable ({entry.error or self._last_error})")
            waiting = self._inflight.get(volume_id)
            if waiting is None:
                waiting = self._inflight[volume_id] = threading.Event()
                fetcher = True
            else:
                fetcher = False
        if fetcher:
            try:
                self._fetch_into_cache({volume_id: pv_name}, self.options.storage_budget)
            finally:
                waiting.set()
                with self._volumes_lock:
                    self._inflight.pop(volume_id, None)
        else:
            waiting.wait(self.options.storage_budget)
        with self._volumes_lock:
            entry = self._volumes[volume_id]
            if entry.facts is None:
                raise DriverError(f"{self.name}: volume {volume_id} not loaded: {entry.error or 'still loading'}")
            return entry.facts

    def _fetch_into_cache(self, volume_ids: Mapping[str, str], timeout: float) -> bool:
        try:
            found = self._fetch_volumes(volume_ids, timeout)
        except StorageApiError as err:
            self._note_failure("volumes", err)
            with self._volumes_lock:
                for volume_id in volume_ids:
                    self._volumes.setdefault(volume_id, _Entry()).error = str(err)
            return False
        self._note_success("volumes")
        now = time.monotonic()
        with self._volumes_lock:
            for volume_id in volume_ids:
                entry = self._volumes.setdefault(volume_id, _Entry())
                facts = found.get(volume_id, UNKNOWN)
                if facts != entry.facts:
                    self._volumes_version += 1
                entry.facts, entry.fetched_at, entry.error = facts, now, ""
        return True

    def _refresh_volumes(self, force: bool = False) -> None:
        """Reads volumes that are due (failed ones each round, about once a second), and
        forgets volumes no request has asked for in a while (their PVs are likely gone)."""
        now = time.monotonic()
        idle = IDLE_REFRESHES * self.options.volume_refresh_interval
        with self._volumes_lock:
            for volume_id in [v for v, e in self._volumes.items() if now - e.used_at > idle]:
                del self._volumes[volume_id]
            due = [
                (volume_id, entry.pv_name)
                for volume_id, entry in self._volumes.items()
                if volume_id not in self._inflight
                and (force or entry.facts is None or now - entry.fetched_at >= self.options.volume_refresh_interval)
            ]
        for start in range(0, len(due), BATCH):
            batch = dict(due[start : start + BATCH])
            if self._stop.is_set() or not self._fetch_into_cache(batch, self.options.api_timeout):
                return

    # -- health of the storage API ---------------------------------------------

    def _note_success(self, kind: str) -> None:
        self.refreshes[(kind, "ok")] += 1
        self.refreshes.setdefault((kind, "error"), 0)  # the error series a dashboard watches exists, at 0
        self.last_refresh[kind] = time.time()
        self._api_down_until = 0.0
        if not self.answered.is_set():
            log.info("storage API answered", extra={"driver": self.name})
        self.answered.set()

    def _note_failure(self, kind: str, err: Exception) -> None:
        self.refreshes[(kind, "error")] += 1
        self._last_error = str(err)
        # Requests stop waiting on the API until the background thread gets an answer
        # (it retries each round, about once a second; never in a tight loop).
        self._api_down_until = time.monotonic() + max(self.options.node_refresh_interval, 1.0)
        log.warning("storage API call failed", extra={"driver": self.name, "kind": kind, "error": str(err)})

    def collect(self) -> Iterator[Any]:
        """Prometheus metrics of the storage API (the driver is registered as a collector)."""
        refreshes = CounterMetricFamily(
            "stork_storage_refreshes", "Background reads of the storage API", labels=["driver", "kind", "result"]
        )
        for (kind, result), count in sorted(self.refreshes.items()):
            refreshes.add_metric([self.name, kind, result], count)
        yield refreshes
        calls = CounterMetricFamily(
            "stork_storage_api_calls", "Calls to the storage API, by result", labels=["driver", "call", "result"]
        )
        for (call, result), count in sorted(self.api_calls().items()):
            calls.add_metric([self.name, call, result], count)
        yield calls
        last = GaugeMetricFamily(
            "stork_storage_last_refresh_timestamp_seconds",
            "When the storage API last answered a background read",
            labels=["driver", "kind"],
        )
        for kind, when in sorted(self.last_refresh.items()):
            last.add_metric([self.name, kind], when)
        yield last
        with self._volumes_lock:
            cached = sum(1 for e in self._volumes.values() if e.facts is not None)
        gauge = GaugeMetricFamily("stork_storage_cached_volumes", "Volumes known in memory", labels=["driver"])
        gauge.add_metric([self.name], cached)
        yield gauge
