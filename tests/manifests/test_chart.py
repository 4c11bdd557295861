"""The Helm chart installs what the kustomize overlays install.

For each overlay, the chart rendered with that overlay's settings holds the same objects (kind,
namespace, name) with the same content: RBAC rules, container settings, webhook configurations,
CRDs. The differences are the ones Helm's conventions bring, removed before comparing:
- Helm's labels (app.kubernetes.io/instance, app.kubernetes.io/managed-by, helm.sh/chart);
- the chart does not create its namespace (`helm install --create-namespace`), so the overlay's
  Namespace object (labelled to keep stork's pods out of its webhook) has no counterpart;
- the certificates Job is a post-install hook (annotations), so an upgrade does not re-issue
  the certificates nor trip over the finished Job's immutable template;
- the stork scheduler's pod template carries a checksum of its configuration (a changed
  configuration restarts it), and its configuration's comments differ (compared as YAML);
- every container names its imagePullPolicy (IfNotPresent, the value Kubernetes defaults to).
"""

from __future__ import annotations

import difflib
import json
import subprocess
from typing import Any

import pytest
import yaml

from localcluster.binaries import REPO, helm
from tests.manifests.rendering import render

pytestmark = pytest.mark.manifests

CHART = REPO / "charts" / "stork-py"
HELM_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart")
HOOK_ANNOTATIONS = ("helm.sh/hook", "helm.sh/hook-delete-policy")
# Each overlay's settings as chart values.
OVERLAY_VALUES = {
    "longhorn": [],
    "csi": ["driver.name=csi"],
    "portworx": ["driver.name=pxd"],
    "linstor": ["driver.name=linstor"],
    "default-scheduler": ["scheduler.mode=default-scheduler", "driver.longhorn.snapshotClass.create=false"],
    "cert-manager": ["certificates.mode=cert-manager"],
}


def helm_template(*values: str, kube_version: str = "1.30.0") -> list[dict[str, Any]]:
    args = [helm(), "template", "stork", str(CHART), "--namespace", "stork", "--include-crds"]
    args += ["--kube-version", kube_version, *(f"--set={v}" for v in values)]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def normalized(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))  # a copy
    for meta in _metadatas(doc):
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_LABELS}
        annotations = {
            k: v for k, v in (meta.get("annotations") or {}).items() if k not in HOOK_ANNOTATIONS
            and k != "checksum/config"
        }  # fmt: skip
        for key, value in (("labels", labels), ("annotations", annotations)):
            if value:
                meta[key] = value
            else:
                meta.pop(key, None)
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        container.setdefault("imagePullPolicy", "IfNotPresent")
    if doc["kind"] == "ConfigMap" and "config.yaml" in doc.get("data", {}):
        doc["data"]["config.yaml"] = yaml.safe_load(doc["data"]["config.yaml"])
    return doc


def _metadatas(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = [doc.setdefault("metadata", {})]
    template = doc.get("spec", {}).get("template")
    if isinstance(template, dict):
        found.append(template.setdefault("metadata", {}))
    return found


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): normalized(d) for d in docs}


@pytest.mark.parametrize("overlay", list(OVERLAY_VALUES))
def test_the_chart_installs_the_objects_of_each_overlay(overlay):
    kustomized = by_key([d for d in render(overlay) if d["kind"] != "Namespace"])
    charted = by_key(helm_template(*OVERLAY_VALUES[overlay]))
    assert sorted(charted) == sorted(kustomized)
    for key, expected in kustomized.items():
        assert charted[key] == expected, _diff(key, expected, charted[key])


def _diff(key: tuple[str, str, str], kustomized: dict[str, Any], charted: dict[str, Any]) -> str:
    lines = difflib.unified_diff(
        yaml.safe_dump(kustomized).splitlines(), yaml.safe_dump(charted).splitlines(), "kustomize", "chart", lineterm=""
    )
    return f"{key}:\n" + "\n".join(lines)


def test_helm_lint_is_clean():
    done = subprocess.run([helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("driver.name=ceph", "at '/driver/name': value must be one of 'longhorn', 'csi', 'pxd', 'linstor'"),
        ("scheduler.percentageOfNodesToScore=150", "at '/scheduler/percentageOfNodesToScore': maximum"),
        ("webhook.replica=3", "at '/webhook': additional properties 'replica' not allowed"),
        ("scheduler.configApiVersion=kubescheduler.config.k8s.io/v1alpha1", "at '/scheduler/configApiVersion'"),
    ],
)
def test_a_wrong_value_fails_with_its_path(value, message):
    done = subprocess.run([helm(), "template", "stork", str(CHART), f"--set={value}"], capture_output=True, text=True)
    assert done.returncode != 0
    assert message in done.stderr


def test_values_reach_the_objects():
    docs = by_key(
        helm_template(
            "image.repository=registry.example/stork-py",
            "image.tag=0.2.0",
            "extender.replicas=5",
            "scheduler.percentageOfNodesToScore=100",
            "scheduler.configApiVersion=kubescheduler.config.k8s.io/v1beta3",
            "nodeSelector.pool=system",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "monitoring.serviceMonitors=true",
            "monitoring.prometheusRule=true",
            "monitoring.dashboard=true",
        )
    )
    extender = docs[("Deployment", "stork", "stork-extender")]
    assert extender["spec"]["replicas"] == 5
    pod = extender["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/stork-py:0.2.0"
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    config = docs[("ConfigMap", "stork", "stork-scheduler-config")]["data"]["config.yaml"]
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1beta3"
    assert config["percentageOfNodesToScore"] == 100
    rules = yaml.safe_load((REPO / "manifests" / "monitoring" / "stork-py-alerts.rules.yaml").read_text())
    assert docs[("PrometheusRule", "stork", "stork-py")]["spec"] == rules
    dashboard = docs[("ConfigMap", "stork", "stork-py-dashboard")]
    assert json.loads(dashboard["data"]["stork-py-dashboard.json"]) == json.loads(
        (REPO / "manifests" / "monitoring" / "stork-py-dashboard.json").read_text()
    )
    assert {("ServiceMonitor", "stork", "stork-py"), ("PodMonitor", "stork", "stork-controller")} <= set(docs)


def test_on_kubernetes_1_20_the_disruption_budgets_use_policy_v1beta1():
    budgets = [d for d in helm_template(kube_version="1.20.2") if d["kind"] == "PodDisruptionBudget"]
    assert budgets and {d["apiVersion"] for d in budgets} == {"policy/v1beta1"}
