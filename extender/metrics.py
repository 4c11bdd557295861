"""Prometheus metrics of the extender."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

PLACEMENT_GAUGES = {
    "hyperconverged": "Running pods whose node holds a replica of every driver volume.",
    "semi_hyperconverged": "Running pods whose node holds replicas of some driver volumes.",
    "non_hyperconverged": "Running pods whose node holds no replica of their driver volumes.",
}


class ExtenderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "stork_extender_requests",
            "Extender requests by verb, HTTP status and request mode (names: NodeNames, nodes: full Nodes).",
            ["verb", "code", "mode"],
            registry=registry,
        )
        self.latency = Histogram(
            "stork_extender_request_duration_seconds",
            "Time to answer an extender request.",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.fail_open = Counter(
            "stork_extender_fail_open",
            "Requests answered without storage awareness because the driver could not answer.",
            ["verb"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "stork_extender_internal_errors",
            "Requests that hit a bug in the extender (answered neutrally, see logs).",
            ["verb"],
            registry=registry,
        )
        self.unschedulable = Counter(
            "stork_extender_pods_unschedulable",
            "Filter answers in which storage made every node fail.",
            registry=registry,
        )
        # Known label values start at 0, so a healthy install's panels show 0, not "no data".
        self.fail_open.labels("filter")
        for verb in ("filter", "prioritize"):
            self.internal_errors.labels(verb)


class PlacementCollector(Collector):
    """The stork_*_pods_total gauges, computed from the pod cache at scrape time."""

    def __init__(self, classify: Callable[[], dict[str, int]]) -> None:
        self.classify = classify

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts = self.classify()
        for kind, help_text in PLACEMENT_GAUGES.items():
            yield GaugeMetricFamily(f"stork_{kind}_pods_total", help_text, value=counts.get(kind, 0))
