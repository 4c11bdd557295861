"""A real Prometheus (Debian's, from scripts/promtool.sh) scrapes stork-py on a control plane
of its own, as the shipped monitors do (the extender and the webhook over HTTPS at /metrics
without verifying stork-py's own CA, the controller over HTTP at /metrics), with the shipped
alert rules loaded. After pods were placed through Longhorn and through a simulated Portworx,
every query of the Grafana dashboard must parse and return at least one series: a panel that
would show "no data" on a working install fails the test by name.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from localcluster import simulate
from localcluster.binaries import REPO, prometheus
from localcluster.cluster import LocalCluster, six_nodes
from localcluster.processes import free_port, wait_until
from localcluster.simulated_portworx import SimulatedPortworx
from localcluster.stork import Stork
from tests.e2e.helpers import bound_pod, create_deployment, longhorn_workload, wait_bound_claim, wait_for

pytestmark = pytest.mark.e2e

MONITORING = REPO / "manifests" / "monitoring"
SCRAPE_INTERVAL = "1s"
PXD_LABELS = {"stork-e2e/driver": "pxd"}


def scrape_config(storks: list[Stork], controller: str) -> dict[str, Any]:
    """The shipped ServiceMonitor and PodMonitor, as static targets."""
    monitors = [d for d in yaml.safe_load_all((MONITORING / "monitors.yaml").read_text()) if d]
    (service_monitor,) = [m for m in monitors if m["kind"] == "ServiceMonitor"]
    (pod_monitor,) = [m for m in monitors if m["kind"] == "PodMonitor"]
    (endpoint,) = service_monitor["spec"]["endpoints"]
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    servers = {
        "job_name": "stork-py",
        "scheme": endpoint["scheme"],
        "metrics_path": endpoint["path"],
        "tls_config": {"insecure_skip_verify": endpoint["tlsConfig"]["insecureSkipVerify"]},
        "static_configs": [
            {"targets": [f"127.0.0.1:{s.extender_port}", f"127.0.0.1:{s.webhook_port}"]} for s in storks
        ],
    }
    controllers = {
        "job_name": "stork-controller",
        "scheme": "http",
        "metrics_path": pod_endpoint["path"],
        "static_configs": [{"targets": [controller]}],
    }
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(MONITORING / "stork-py-alerts.rules.yaml")],
        "scrape_configs": [servers, controllers],
    }


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}" if params else self.base + path
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:  # a query that does not parse: 400 with the error
            return json.loads(err.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def targets_up(self) -> bool:
        active = self.get("/api/v1/targets")["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


@pytest.fixture(scope="module")
def scraped() -> Iterator[Prometheus]:
    local = LocalCluster.create()
    portworx = SimulatedPortworx().start()
    try:
        local.start()
        kube = local.kube()
        longhorn = local.add_stork("longhorn", tls_from_secret=True)
        for i in range(6):
            portworx.add_node(f"px-{i}", scheduler_name=f"node-{i}", hostname=f"node-{i}", ip=f"10.1.0.{i + 1}")
        pxd = local.add_stork(
            "pxd",
            ["--px-endpoint", portworx.url, "--node-refresh-interval", "1", "--volume-refresh-interval", "1"],
            scheduler_name="stork-pxd",
            namespace_labels=PXD_LABELS,
        )
        local.add_nodes(six_nodes())
        simulate.longhorn_class(kube)
        simulate.storage_class(kube, "px", "pxd.portworx.com")
        controller = local.start_controller(
            "stork-controller",
            "longhorn",
            ["--health-monitor-interval", "1", "--unsafe-short-intervals", "--tls-secret", "stork/stork-tls",
             "--restart-on-ca-change", ""],
        )  # fmt: skip
        port = free_port()
        config = local.control_plane.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config([longhorn, pxd], controller.removeprefix("http://"))))
        local.control_plane.procs.start(
            "prometheus",
            [
                prometheus(),
                f"--config.file={config}",
                f"--storage.tsdb.path={local.control_plane.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
        )
        server = Prometheus(f"http://127.0.0.1:{port}")
        wait_until(server.targets_up, 60, "Prometheus scraping every stork-py process")
        place_pods(local, portworx)
        time.sleep(5)  # a few scrapes after the traffic: rate() needs two samples of each series
        yield server
    finally:
        local.stop()
        portworx.stop()


def place_pods(local: LocalCluster, portworx: SimulatedPortworx) -> None:
    kube = local.kube()
    local.ensure_namespace("watched")
    app, _ = longhorn_workload(kube, "watched", ["node-1", "node-4"])
    bound_pod(kube, "watched", app, timeout=90)
    local.ensure_namespace("watched-px", PXD_LABELS)
    portworx.add_volume("vol-px", ["px-2", "px-3"])
    pv = {"portworxVolume": {"volumeID": "vol-px", "fsType": "ext4"}}
    simulate.bound_claim(kube, "watched-px", "data", "px", pv)
    wait_bound_claim(kube, "watched-px", "data")
    create_deployment(kube, "watched-px", "px-app", ["data"])
    bound_pod(kube, "watched-px", "px-app", timeout=90)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "stork-py-dashboard.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_dashboard_query_returns_data_on_a_working_install(scraped):
    empty = []
    for title, expr in dashboard_queries():
        answer = scraped.query(expr)
        assert answer["status"] == "success", (title, expr, answer.get("error"))
        if not answer["data"]["result"]:
            empty.append(f"{title}: {expr}")
    assert empty == []


def test_the_alert_rules_load_and_evaluate(scraped):
    shipped = yaml.safe_load((MONITORING / "stork-py-alerts.rules.yaml").read_text())
    names = {rule["alert"] for group in shipped["groups"] for rule in group["rules"]}

    def evaluated() -> list[dict] | None:
        groups = scraped.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = wait_for(evaluated, 30, "every rule evaluated")
    assert {r["name"] for r in rules} == names
    assert {r["health"] for r in rules} == {"ok"}, [(r["name"], r.get("lastError")) for r in rules]
