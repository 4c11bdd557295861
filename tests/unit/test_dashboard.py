"""The Grafana dashboard and the Prometheus Operator monitors in manifests/monitoring/.

Every metric the dashboard queries must be one the components really export: the
names come from the /metrics output of the extender (over a pxd driver, so the
storage API metrics are there too), the webhook and the controller.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from certs import authority as ca_tools
from controller.cli import ControllerMetrics
from storkcore.serving import ReloadingTLS
from tests.drivers import PortworxBackend
from tests.unit.extender_client import ExtenderClient
from tests.unit.test_scoring import NODES, claims_pod, layout
from webhook.admission import AdmissionSettings
from webhook.app import create_app as create_webhook

MONITORING = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((MONITORING / "stork-py-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    return {name for expr in exprs for name in re.findall(r"\bstork_[a-z_]+", expr)}


def exported(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES}  # labelled families may have no samples yet
        names |= {sample.name for sample in family.samples}
    return names


def serve_a_certificate(folder: Path) -> None:
    """Load a certificate as a TLS server would, so the served expiry is exported."""
    ca = ca_tools.create_ca(days=1)
    ca_tools.save(folder, ca, ca_tools.create_serving(ca, ["localhost"], days=1))
    ReloadingTLS(str(folder / ca_tools.TLS_CERT), str(folder / ca_tools.TLS_KEY)).context()


def every_exported_metric() -> set[str]:
    backend = PortworxBackend()
    try:
        with tempfile.TemporaryDirectory() as folder:
            serve_a_certificate(Path(folder))
        world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"]})
        extender = ExtenderClient(world)
        extender.filter(claims_pod("vol1"), NODES)
        extender.scores(claims_pod("vol1"), NODES)
        names = exported(extender.http.get("/metrics").get_data(as_text=True))
        webhook = create_webhook(world.driver, AdmissionSettings()).test_client()
        names |= exported(webhook.get("/metrics").get_data(as_text=True))
    finally:
        backend.close()
    registry = CollectorRegistry()
    ControllerMetrics(registry)
    return names | exported(generate_latest(registry).decode())


def test_every_metric_the_dashboard_queries_is_exported():
    queried = dashboard_metrics()
    available = every_exported_metric()
    assert queried - available == set()
    # It covers what an operator asks first: placement, latency, fail-open, monitor actions.
    for wanted in (
        "stork_hyperconverged_pods_total",
        "stork_extender_request_duration_seconds_bucket",
        "stork_extender_fail_open_total",
        "stork_pods_rescheduled_total",
        "stork_tls_serving_certificate_expiry_timestamp_seconds",
        "stork_certificate_expiry_timestamp_seconds",
    ):
        assert wanted in queried


def test_the_check_would_notice_a_metric_nobody_exports():
    assert "stork_extender_requests_total" in every_exported_metric()
    assert "stork_no_such_metric_total" not in every_exported_metric()


def test_monitors_scrape_each_component_on_its_metrics_port():
    docs = {d["kind"]: d for d in yaml.safe_load_all((MONITORING / "monitors.yaml").read_text()) if d}
    service_monitor, pod_monitor = docs["ServiceMonitor"], docs["PodMonitor"]
    assert service_monitor["apiVersion"] == pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (selected,) = service_monitor["spec"]["selector"]["matchExpressions"]
    assert set(selected["values"]) == {"stork-extender", "stork-webhook"}
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == ("https", "https", "/metrics")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "stork-controller"}
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_the_ports_the_monitors_name_exist_in_the_install_manifests():
    base = MONITORING.parent / "base"
    for component in ("extender", "webhook"):
        docs = [d for d in yaml.safe_load_all((base / f"{component}.yaml").read_text()) if d]
        (service,) = [d for d in docs if d["kind"] == "Service"]
        assert "https" in {p["name"] for p in service["spec"]["ports"]}
        assert service["metadata"]["labels"]["app.kubernetes.io/name"] == f"stork-{component}"
    docs = [d for d in yaml.safe_load_all((base / "controller.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "metrics" in {p["name"] for p in container["ports"]}


def test_a_healthy_install_shows_zero_not_no_data_for_its_known_labels():
    """Counters with a known set of label values start at 0, so the dashboard's panels (and a
    rate over them) show 0 on a healthy install instead of "no data"."""
    from extender.metrics import ExtenderMetrics

    registry = CollectorRegistry()
    ExtenderMetrics(registry)
    ControllerMetrics(registry)
    text = generate_latest(registry).decode()
    for sample in (
        'stork_extender_fail_open_total{verb="filter"} 0.0',
        'stork_extender_internal_errors_total{verb="prioritize"} 0.0',
        'stork_health_monitor_skipped_total{reason="too-many-offline"} 0.0',
        'stork_health_monitor_skipped_total{reason="replaced-node"} 0.0',
        'stork_group_snapshots_total{status="Failed"} 0.0',
        'stork_certificate_renewals_total{certificate="ca"} 0.0',
    ):
        assert sample in text.splitlines()
