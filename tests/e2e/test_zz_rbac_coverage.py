"""The manifests' RBAC covers every API call stork-py made in this end-to-end run, and the
resources a 1.20 apiserver knows pass `kubectl apply --dry-run=server` there.

The calls come from the apiserver's audit log (each component names itself in its user
agent), so the list is what the code really does, not a list written by hand. The file is
named to run last: the other end-to-end tests make the calls it checks.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.rendering import kubectl, of_kind, render

pytestmark = pytest.mark.e2e

COMPONENTS = ("stork-extender", "stork-webhook", "stork-controller", "stork-certs")
# The harness's test-only stork instances (second schedulers, their webhooks and leases, the
# locality e2e's controller lease): not
# part of the manifests, which install one instance named stork.
HARNESS_ONLY = ("stork-csi", "stork-pxd", "stork-linstor", "stork-locality-e2e")
# The certificate rotation and image tests' instances name their objects like the manifests,
# with an infix ("stork-rotation-tls" for "stork-tls"): checked as the objects the manifests name.
AS_SHIPPED = ("stork-rotation-", "stork-image-")
# Kinds the local 1.20 apiserver does not serve (policy/v1 arrived in 1.21), and cert-manager's.
NOT_IN_1_20 = {("policy/v1", "PodDisruptionBudget")}


def audited_calls(audit_log: Path) -> dict[str, set[tuple[str, str, str, str, str]]]:
    """component -> {(verb, apiGroup, resource, namespace, name)} from the audit log."""
    calls: dict[str, set[tuple[str, str, str, str, str]]] = {c: set() for c in COMPONENTS}
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        agent = event.get("userAgent", "").split("/")[0]
        ref = event.get("objectRef")
        if agent not in calls or not ref:
            continue
        if ref.get("name", "").startswith(AS_SHIPPED):
            ref = {**ref, "name": "stork-" + ref["name"].split("-", 2)[2]}
        if ref.get("name", "").startswith(HARNESS_ONLY):
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        name = "" if event["verb"] in ("create", "list", "watch") else ref.get("name", "")
        calls[agent].add((event["verb"], ref.get("apiGroup", ""), resource, ref.get("namespace", ""), name))
    return calls


def rules_for(docs: Iterable[dict[str, Any]], account: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(namespace or None for cluster-wide, rule) for every rule bound to stork/<account>."""
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in of_kind(docs, "Role", "ClusterRole")
    }
    found = []
    for binding in of_kind(docs, "RoleBinding", "ClusterRoleBinding"):
        if not any(s["name"] == account and s.get("namespace") == "stork" for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace")  # None for a ClusterRoleBinding
        role = roles.get((ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"]))
        assert role is not None, f"binding {binding['metadata']['name']} names a role the manifests do not define"
        found += [(scope, rule) for rule in role["rules"]]
    return found


def allowed(rules, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
    for scope, rule in rules:
        if scope is not None and scope != namespace:
            continue
        if group not in rule.get("apiGroups", []) or resource not in rule.get("resources", []):
            continue
        if verb not in rule.get("verbs", []):
            continue
        if rule.get("resourceNames") and name not in rule["resourceNames"]:
            continue
        return True
    return False


def test_rbac_covers_every_call_the_components_made(cluster):
    calls = audited_calls(cluster.control_plane.audit_log)
    seen = {c for c, made in calls.items() if made}
    assert {"stork-extender", "stork-webhook", "stork-controller", "stork-certs"} <= seen, seen
    docs = render("longhorn")
    missing = []
    for component, made in calls.items():
        rules = rules_for(docs, component)
        missing += [(component, *call) for call in sorted(made) if not allowed(rules, *call)]
    assert missing == []


def test_the_check_notices_a_missing_permission(cluster):
    rules = rules_for(render("longhorn"), "stork-webhook")
    assert allowed(rules, "list", "", "persistentvolumeclaims", "", "")
    assert not allowed(rules, "delete", "", "pods", "default", "x")  # only the controller deletes pods


def test_manifests_pass_server_side_dry_run_on_the_local_apiserver(cluster, tmp_path):
    docs = [d for d in render("longhorn") if (d["apiVersion"], d["kind"]) not in NOT_IN_1_20]
    # 1.20 has no kubernetes.io/metadata.name labels and no v1 scheduler config to check, but
    # every object here is one it serves.
    rendered = tmp_path / "longhorn.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    run = subprocess.run(
        [kubectl(), "--kubeconfig", str(cluster.kubeconfig), "apply", "--dry-run=server", "-f", str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("(server dry run)") == len(docs)
