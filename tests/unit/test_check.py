"""`storkctl check`'s judgements, each on the facts that decide it (the live install, with each
fault injected, is tests/e2e/test_check.py)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest
import yaml

from storkcore.kube import NODES
from storkcore.matching import NodeIndex
from storkcore.model import NodeStatus, StorageNode
from storkctl import check, permissions
from storkctl.check import FAIL, PASS, WARN, Install

ROOT = Path(__file__).resolve().parents[2]
RBAC_FILES = {
    "": ["manifests/base/rbac.yaml", "manifests/scheduler/scheduler.yaml"],
    "longhorn": ["manifests/longhorn-access/longhorn-rbac.yaml"],
    "pxd": ["manifests/overlays/portworx/portworx-rbac.yaml"],
}


def granted(driver: str) -> dict[str, set[permissions.Permission]]:
    """Service account -> what the shipped Roles and ClusterRoles bound to it allow, rule by rule."""
    docs = [
        d for f in RBAC_FILES[""] + RBAC_FILES.get(driver, []) for d in yaml.safe_load_all((ROOT / f).read_text()) if d
    ]
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs if "rules" in d}
    found: dict[str, set[permissions.Permission]] = {}
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        where = binding["metadata"].get("namespace", "")
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], where if ref["kind"] == "Role" else "", ref["name"]))
        if role is None:
            continue  # the standard roles (system:kube-scheduler, ...) are the cluster's
        for subject in binding["subjects"]:
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            for name in rule.get("resourceNames", [""]):
                                found.setdefault(subject["name"], set()).add(
                                    permissions.Permission(verb, group, resource, where, name)
                                )
    return found


@pytest.mark.parametrize("driver", ["longhorn", "pxd", "csi", "linstor"])
def test_the_permissions_checked_are_exactly_what_the_shipped_roles_grant(driver):
    needed = permissions.needed("stork", "stork", driver, "longhorn-system", with_scheduler=True)
    shipped = granted(driver)
    for account in ("stork-extender", "stork-webhook", "stork-controller", "stork-certs"):
        assert set(needed[account]) == shipped[account], account
    # The scheduler's own roles grant its Lease; the standard roles the rest.
    assert shipped["stork-scheduler"] <= set(needed["stork-scheduler"])


def test_a_review_asks_for_the_service_account_and_the_subresource():
    permission = permissions.Permission("create", "", "pods/exec")
    spec = permissions.review("stork", "stork-controller", permission)["spec"]
    assert spec["user"] == "system:serviceaccount:stork:stork-controller"
    assert "system:serviceaccounts:stork" in spec["groups"]
    assert spec["resourceAttributes"] == {"verb": "create", "group": "", "resource": "pods", "subresource": "exec"}
    assert permission.describe() == "create pods/exec"
    leased = permissions.Permission("update", "coordination.k8s.io", "leases", "stork", "stork-controller")
    assert leased.describe() == "update leases.coordination.k8s.io stork-controller in namespace stork"


def install(server_minor: int = 20) -> Install:
    return Install("stork", "stork", server_minor=server_minor, scheduler_source="ConfigMap stork/x")


def config(version: str) -> dict:
    return {"apiVersion": f"kubescheduler.config.k8s.io/{version}", "kind": "KubeSchedulerConfiguration"}


@pytest.mark.parametrize(
    ("minor", "version", "verdict", "reads"),
    [
        (20, "v1beta1", PASS, ""),
        (20, "v1", FAIL, "v1beta1"),
        (29, "v1beta3", FAIL, "v1"),  # stork#1808: 1.29 dropped v1beta3
        (28, "v1beta3", PASS, ""),
        (30, "v1", PASS, ""),
        (22, "v1beta2", PASS, ""),
        (23, "v1beta1", FAIL, "v1beta3"),
    ],
)
def test_the_scheduler_configuration_must_be_a_version_its_kube_scheduler_reads(minor, version, verdict, reads):
    result = check._config_version_result(install(minor), config(version), (minor, f"kube-scheduler 1.{minor}"))
    assert result.verdict == verdict, result
    if verdict == FAIL:
        assert f"apiVersion: kubescheduler.config.k8s.io/{reads}" in result.fix
        assert "rollout restart deployment/stork-scheduler" in result.fix


def test_a_scheduler_image_newer_than_the_apiserver_fails():
    deployment = {"spec": {"template": {"spec": {"containers": [{"image": "registry/kube-scheduler:v1.30.0"}]}}}}
    scheduler = check._scheduler_minor(install(29), deployment)
    assert scheduler == (30, "kube-scheduler image registry/kube-scheduler:v1.30.0")
    result = check._config_version_result(install(29), config("v1"), scheduler)
    assert result.verdict == FAIL and "newer than the apiserver (1.29)" in result.detail


class Listing:
    def __init__(self, count: int) -> None:
        self.count = count

    def list(self, resource, page_size=500, field_selector=""):
        assert resource == NODES
        return [{"metadata": {"name": f"n{i}"}} for i in range(self.count)], "1"


@pytest.mark.parametrize(
    ("nodes", "percentage", "verdict", "sampled"),
    [(6, 0, PASS, ""), (100, 0, PASS, ""), (1000, 0, WARN, "about 420 feasible nodes (42 %)"),
     (5000, 0, WARN, "about 500 feasible nodes (10 %)"), (1000, 100, PASS, ""), (1000, 30, WARN, "about 300")],
)  # fmt: skip
def test_above_100_nodes_a_sampling_scheduler_is_a_warning_with_its_numbers(nodes, percentage, verdict, sampled):
    target = install()
    target.kube = Listing(nodes)  # type: ignore[assignment]
    target.scheduler_config = config("v1beta1") | ({"percentageOfNodesToScore": percentage} if percentage else {})
    (result,) = check.check_nodes_to_score(target)
    assert result.verdict == verdict
    assert sampled in result.detail
    if verdict == WARN:
        assert "percentageOfNodesToScore: 100" in result.fix


class Objects:
    def __init__(self, found: dict) -> None:
        self.found = found

    def get(self, resource, namespace, name, timeout=3.0):
        return self.found.get((resource.plural, namespace, name))


def lease(renewed_ago: float, holder: str = "pod-a") -> dict:
    renewed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=renewed_ago)
    return {"spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed.isoformat()}}


@pytest.mark.parametrize(
    ("found", "verdict", "words"),
    [
        ((2, "pod-a"), PASS, "held by pod-a, renewed 2s ago"),
        ((600, "pod-a"), FAIL, "pod-a last renewed it 10m ago (it expires after 15s): stork-controller is not running"),
        ((2, ""), FAIL, "held by no one"),
        (None, FAIL, "no Lease stork/stork-controller"),
    ],
)
def test_the_controller_must_hold_a_fresh_lease(found, verdict, words):
    target = install()
    found = lease(*found) if found else None  # made now: parameters are made at collection
    target.kube = Objects({("leases", "stork", "stork-controller"): found} if found else {})  # type: ignore[assignment]
    (result,) = check.check_controller(target)
    assert result.verdict == verdict
    assert words in result.detail
    if verdict == FAIL:
        assert "app.kubernetes.io/name=stork-controller" in result.fix


def test_a_webhook_that_could_block_pods_or_delay_them_is_named():
    kube = Objects({("services", "stork", "stork-webhook"): {"metadata": {"name": "stork-webhook"}}})
    shipped = {
        "name": "pods.stork.libopenstorage.org",
        "failurePolicy": "Ignore",
        "timeoutSeconds": 3,
        "clientConfig": {"service": {"namespace": "stork", "name": "stork-webhook"}},
    }
    assert check._hook_problems(kube, shipped) == []  # type: ignore[arg-type]
    changed = shipped | {"failurePolicy": "Fail", "timeoutSeconds": 10}
    problems = check._hook_problems(kube, changed)  # type: ignore[arg-type]
    assert [p.split(":")[1].strip() for p in problems] == ["failurePolicy Fail", "timeoutSeconds 10 (shipped"]
    gone = shipped | {"clientConfig": {"service": {"namespace": "stork", "name": "elsewhere"}}}
    assert check._hook_problems(kube, gone) == [  # type: ignore[arg-type]
        "pods.stork.libopenstorage.org: Service stork/elsewhere does not exist"
    ]


class Storage:
    """A driver and the cluster state it reads, as the storage check sees them."""

    def __init__(self, storage: list[StorageNode], k8s: list[dict], answers: bool = True) -> None:
        self.storage, self.k8s, self.answers = storage, k8s, answers
        self._last_error = "" if answers else "connection refused"

    def wait_synced(self, timeout):
        return True

    def wait_ready(self, timeout):
        return self.answers

    def nodes(self):
        return self.storage

    def index(self):
        return NodeIndex(self.storage)

    def store(self, resource):
        assert resource == NODES
        return self

    def list(self):
        return self.k8s


def storage_node(name: str, ip: str = "") -> StorageNode:
    return StorageNode(name, "", name, NodeStatus.ONLINE, ips=(ip,) if ip else ())


def k8s_node(name: str, ip: str) -> dict:
    return {"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def storage_result(state: Storage):
    args = argparse.Namespace(driver="pxd", sync_timeout=1.0)
    return check._storage_result(install(), state, state, args)  # type: ignore[arg-type]


def test_storage_nodes_that_match_no_kubernetes_node_are_counted_and_named():
    k8s = [k8s_node("node-1", "10.0.0.1"), k8s_node("node-2", "10.0.0.2"), k8s_node("node-3", "10.0.0.3")]
    matched = [storage_node("node-1"), storage_node("px-2", "10.0.0.2")]  # by name, by IP
    result = storage_result(Storage(matched, k8s))
    assert result.verdict == PASS
    assert (
        result.detail == "pxd: 2 storage nodes, each matched to a Kubernetes node; 1 Kubernetes nodes hold no storage"
    )
    unmatched = [*matched, storage_node("px-9", "10.9.9.9"), storage_node("px-8")]
    result = storage_result(Storage(unmatched, k8s))
    assert result.verdict == WARN
    assert "2 of 4 storage nodes match no Kubernetes node (px-8, px-9)" in result.detail


def test_an_unreachable_storage_api_fails_with_its_error():
    result = storage_result(Storage([], [], answers=False))
    assert result.verdict == FAIL
    assert "the storage API did not answer in 1s: connection refused" in result.detail
    assert "--px-endpoint" in result.fix


def test_a_check_the_cluster_refuses_fails_with_the_reason_and_the_rest_still_run():
    from storkcore.kube import ApiError

    def refused(_install):
        raise ApiError(403, b'{"message": "forbidden"}')
        yield  # a generator, like every check

    def fine(_install):
        yield check.Result("fine", PASS, "ok")

    target = install()
    original = check.CHECKS
    check.CHECKS = [refused, fine]
    try:
        results = list(check.run_all(target))
    finally:
        check.CHECKS = original
    assert [(r.check, r.verdict) for r in results] == [("refused", FAIL), ("fine", PASS)]
    assert results[0].detail.startswith("could not check: no permission")
