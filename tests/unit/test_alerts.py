"""The alert rules in manifests/monitoring/: valid for Prometheus (promtool check rules), each
alert fires on the series that should fire it and stays silent otherwise (promtool test rules,
stork-py-alerts.test.yaml), the PrometheusRule carries the same rules, and every metric an
alert reads is one stork-py exports."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from controller.features import Features
from localcluster.binaries import promtool
from tests.unit.test_dashboard import MONITORING, every_exported_metric, exported

pytestmark = pytest.mark.integration

RULES = MONITORING / "stork-py-alerts.rules.yaml"
ALERTS = {
    "StorkCertificateExpiringSoon",
    "StorkExtenderFailingOpen",
    "StorkExtenderSlow",
    "StorkHealthMonitorDeletingPods",
    "StorkNoControllerLeader",
    "StorkStorageApiErrors",
    "StorkControllerFeatureWaiting",
}


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules():
    checked = run_promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_each_alert_fires_when_it_should_and_only_then():
    tested = run_promtool("test", "rules", "stork-py-alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load((MONITORING / "stork-py-alerts.test.yaml").read_text())["tests"]
    checks = [c for case in cases for c in case["alert_rule_test"]]
    for alert in ALERTS:  # every alert is tested firing and silent
        assert any(c["alertname"] == alert and c["exp_alerts"] for c in checks), alert
        assert any(c["alertname"] == alert and not c["exp_alerts"] for c in checks), alert


def test_the_prometheus_rule_carries_the_same_rules():
    docs = {d["kind"]: d for d in yaml.safe_load_all((MONITORING / "monitors.yaml").read_text()) if d}
    rule = docs["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == ALERTS


def test_every_metric_an_alert_reads_is_exported():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    read = {name for g in groups for r in g["rules"] for name in re.findall(r"\bstork_[a-z_]+", r["expr"])}
    registry = CollectorRegistry()
    Features(cluster=None, probe=lambda _: "", registry=registry)  # type: ignore[arg-type]
    available = every_exported_metric() | exported(generate_latest(registry).decode())
    assert read - available == set()
