"""The extender's Flask app: request handling around the filter and the scoring."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable

from flask import Flask
from prometheus_client import CollectorRegistry

from extender.candidates import CandidateResolver
from extender.filter import FilterOutcome, filter_candidates, filter_names
from extender.metrics import ExtenderMetrics, PlacementCollector
from extender.protocol import (
    ExtenderArgs,
    ProtocolError,
    encoded_priority_list,
    filter_result,
    parse_args,
    priority_list,
)
from extender.scoring import FLOOR, holds_any_replica, normalize, score_candidates, score_names
from storkcore import objects
from storkcore.drivers.base import Driver
from storkcore.events import EventSink
from storkcore.kube import NODES, PODS
from storkcore.pods import PodStorage, assess_pod
from storkcore.web import (
    DirectAnswer,
    DirectRoutes,
    add_health_routes,
    cache_detail,
    driver_ready,
    error_body,
    register_driver_metrics,
)

log = logging.getLogger(__name__)
SCORE_MODES = ("stork", "normalized")


class Extender:
    def __init__(self, driver: Driver, events: EventSink, score_mode: str, metrics: ExtenderMetrics) -> None:
        if score_mode not in SCORE_MODES:
            raise ValueError(f"score mode must be one of {', '.join(SCORE_MODES)}")
        self.driver = driver
        self.events = events
        self.score_mode = score_mode
        self.metrics = metrics
        self.resolver = CandidateResolver(driver)
        self._assessed: OrderedDict[tuple, PodStorage] = OrderedDict()
        self._assessed_lock = threading.Lock()

    RECENT_PODS = 64  # kube-scheduler asks /filter then /prioritize for one pod at a time

    def assess(self, pod: dict) -> PodStorage:
        """The pod's storage facts, computed once for its /filter and /prioritize.

        Reused only for the same pod version (UID and resourceVersion) while nothing the
        answer depends on has changed (every cached kind but pods, and the driver's state).
        """
        meta = objects.mapping(pod, "metadata")
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        if not uid or not version:
            return assess_pod(self.driver, pod)
        key = (uid, version, self.driver.cluster.storage_version(), self.driver.state_version())
        with self._assessed_lock:
            found = self._assessed.get(key)
        if found is not None:
            return found
        storage = assess_pod(self.driver, pod)
        with self._assessed_lock:
            self._assessed[key] = storage
            while len(self._assessed) > self.RECENT_PODS:
                self._assessed.popitem(last=False)
        return storage

    def filter(self, args: ExtenderArgs) -> bytes:
        storage = self.assess(args.pod)
        if not storage.concerns_driver:
            return filter_result(args, list(range(len(args.names))), {})
        index_by_id = self.driver.index().by_id
        outcome = None
        if args.node_names is not None:
            outcome = filter_names(index_by_id, args.pod, storage, args.node_names, self.resolver.table)
        if outcome is None:  # Nodes mode, a per-pod rule, or a node not cached yet
            outcome = filter_candidates(index_by_id, args.pod, storage, self.resolver.resolve(args))
        self._report_filter(args.pod, outcome, len(args.names))
        return filter_result(args, outcome.kept, outcome.unresolvable, outcome.transient)

    def prioritize(self, args: ExtenderArgs) -> bytes:
        storage = self.assess(args.pod)
        if not storage.concerns_driver:
            return priority_list(args.names, [FLOOR] * len(args.names))  # as upstream: 5 everywhere
        scores, near_data = self._rank(args, storage)
        if any(v.data_nodes for v in storage.volumes) and not near_data:
            message = _no_replica_among(len(args.names), len(self.driver.cluster.store(NODES)))
            self.events.warn(args.pod, "NonOptimumScheduling", message)
        if self.score_mode == "normalized":
            scores = normalize(scores)
        return encoded_priority_list(args.names, scores)

    def _rank(self, args: ExtenderArgs, storage: PodStorage) -> tuple[list[int], bool]:
        """Scores in the request's order, and whether a candidate holds a replica."""
        index_by_id = self.driver.index().by_id
        if args.node_names is not None:
            ranked = score_names(args.pod, storage, index_by_id, args.node_names, self.resolver.table)
            if ranked is not None:
                return ranked
        candidates = self.resolver.resolve(args)  # Nodes mode, or a node not cached yet
        return score_candidates(args.pod, storage, index_by_id, candidates), holds_any_replica(storage, candidates)

    def _report_filter(self, pod: dict, outcome: FilterOutcome, total: int) -> None:
        if outcome.fail_open:
            self.metrics.fail_open.labels("filter").inc()
            self.events.warn(
                pod,
                "NonOptimumScheduling",
                f"storage driver could not answer ({outcome.fail_open}); placing the pod without storage awareness",
            )
        elif total and not outcome.kept and outcome.unresolvable:
            self.metrics.unschedulable.inc()
            self.events.warn(pod, "FailedScheduling", _summary(outcome, total))

    def placement_counts(self) -> dict[str, int]:
        """Running pods by how close they are to their data (for the gauges)."""
        counts: Tally[str] = Tally()
        index = self.driver.index()
        for pod in self.driver.cluster.store(PODS).list():
            node_name = objects.text(pod, "spec", "nodeName")
            if not node_name or objects.text(pod, "status", "phase") != "Running":
                continue
            volumes = [v for v in assess_pod(self.driver, pod).volumes if v.data_nodes]
            if not volumes:
                continue
            node = self.driver.cluster.store(NODES).get("", node_name)
            storage = index.match(node) if node is not None else None
            local = sum(1 for v in volumes if storage is not None and storage.storage_id in v.data_nodes)
            counts[_placement_kind(local, len(volumes))] += 1
        return dict(counts)


def _placement_kind(local: int, total: int) -> str:
    if local == total:
        return "hyperconverged"
    return "semi_hyperconverged" if local else "non_hyperconverged"


def _no_replica_among(candidates: int, cluster_nodes: int) -> str:
    # kube-scheduler offers only the nodes its own filters kept, and above 100 nodes it stops
    # looking once it has percentageOfNodesToScore of them: name the causes that can apply.
    sampled = ", or it did not sample them (percentageOfNodesToScore)" if cluster_nodes > 100 else ""
    return (
        f"none of the {candidates} candidate nodes (of {cluster_nodes}) holds a replica of the pod's volumes: "
        f"kube-scheduler's own filters ruled the replica nodes out{sampled}"
    )


def _summary(outcome: FilterOutcome, total: int) -> str:
    if outcome.pod_reason:
        return f"0/{total} nodes can host the pod's storage: {outcome.pod_reason}"
    reasons = Tally(outcome.unresolvable.values())
    listed = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return f"0/{total} nodes can host the pod's storage: {listed}"


def create_app(
    driver: Driver,
    events: EventSink,
    score_mode: str = "stork",
    ready: Callable[[], bool] | None = None,
) -> Flask:
    app = Flask("stork-extender")
    registry = CollectorRegistry()
    metrics = ExtenderMetrics(registry)
    extender = Extender(driver, events, score_mode, metrics)
    registry.register(PlacementCollector(extender.placement_counts))
    app.extensions["stork-extender"] = extender
    register_driver_metrics(registry, driver)
    responses = add_health_routes(app, ready or driver_ready(driver), registry, cache_detail(driver))

    def serve(
        verb: str, handle: Callable[[ExtenderArgs], bytes], neutral: Callable[[ExtenderArgs], bytes]
    ) -> Callable[[bytes], DirectAnswer]:
        def answer(body: bytes) -> DirectAnswer:
            started = time.perf_counter()
            try:
                args = parse_args(body)
            except ProtocolError as err:
                metrics.requests.labels(verb, "400", "").inc()
                return 400, error_body(str(err)), []
            try:
                result = handle(args)
            except Exception:
                # A bug of ours must not stop scheduling: answer as if we had no opinion.
                log.exception("extender request failed", extra={"verb": verb, "pod": _pod_id(args.pod)})
                metrics.internal_errors.labels(verb).inc()
                result = neutral(args)
            elapsed = time.perf_counter() - started
            metrics.requests.labels(verb, "200", "names" if args.node_names is not None else "nodes").inc()
            metrics.latency.labels(verb).observe(elapsed)
            # Server-Timing lets a caller tell our time from the network's.
            return 200, result, [("Server-Timing", f"app;dur={elapsed * 1000:.3f}")]

        return answer

    # kube-scheduler waits for these two in its scheduling cycle: answered below Flask.
    verbs = {
        "/filter": serve("filter", extender.filter, lambda a: filter_result(a, list(range(len(a.names))), {})),
        "/prioritize": serve("prioritize", extender.prioritize, lambda a: priority_list(a.names, [0] * len(a.names))),
    }
    app.wsgi_app = DirectRoutes(app.wsgi_app, verbs, responses)  # type: ignore[method-assign]
    return app


def _pod_id(pod: dict) -> str:
    return f"{objects.namespace(pod)}/{objects.name(pod)}"
