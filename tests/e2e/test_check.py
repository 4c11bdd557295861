"""`storkctl check` on a live install, on a control plane of its own: every check passes on the
install as shipped, then each fault is injected in turn and exactly the matching check fails,
naming the fix, and passes again once the fault is undone.

The install here is as shipped where this machine allows it: the webhook configurations from
manifests/base by Service `stork-webhook` (kube-apiserver calls its endpoint, this machine's
address), the TLS Secret `stork-tls`, the scheduler leading through Lease stork/stork-scheduler
with its configuration in ConfigMap stork/stork-scheduler-config (v1beta1: this is 1.20), the
controller leading through Lease stork/stork-controller, ConfigMap stork-config of the longhorn
overlay, and manifests/base/rbac.yaml with the Longhorn access Role, so the real RBAC
authorizer answers the SubjectAccessReviews. The components run as processes with the admin
credential (they are not pods here), so the RBAC check judges the shipped roles, not them.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from localcluster import simulate
from localcluster.binaries import REPO, kubernetes_bin_dir
from localcluster.cluster import LocalCluster, six_nodes
from localcluster.processes import outward_address
from localcluster.stork import VALIDATING, Stork, console_script
from storkcore.kube import CONFIG_MAPS
from storkctl.check import CRDS, SNAPSHOT_CRDS, STORK_CRDS

pytestmark = pytest.mark.e2e

SHIPPED_RBAC = [
    REPO / "manifests" / "base" / "rbac.yaml",
    REPO / "manifests" / "longhorn-access" / "longhorn-rbac.yaml",
]
SHIPPED_CONFIG = REPO / "manifests" / "overlays" / "longhorn" / "config.yaml"
CLUSTER_ROLES = "/apis/rbac.authorization.k8s.io/v1/clusterroles"


@pytest.fixture(scope="module")
def install() -> Iterator[tuple[LocalCluster, Stork]]:
    local = LocalCluster.create()
    try:
        local.start()
        local.ensure_namespace("stork")
        kubectl(local, "apply", *[f"--filename={path}" for path in [*SHIPPED_RBAC, SHIPPED_CONFIG]])
        kubectl(local, "apply", f"--filename={scheduler_rbac(local)}")
        stork = local.add_stork(
            "longhorn",
            host=outward_address(),
            webhook_by_service=True,
            tls_from_secret=True,
            scheduler_as_shipped=True,
        )
        local.add_nodes(six_nodes())
        simulate.longhorn_class(local.kube())
        # The controller as shipped (Lease stork/stork-controller), without the certificate
        # renewal: it would repair the wrong caBundle injected below before the check saw it.
        local.start_controller("stork-controller", "longhorn", ["--no-renew-certificates"])
        yield local, stork
    finally:
        local.stop()


def scheduler_rbac(local: LocalCluster) -> Path:
    """The stork scheduler's account and roles from manifests/scheduler (not its Deployment:
    its image is not here, the scheduler runs as a process)."""
    docs = yaml.safe_load_all((REPO / "manifests" / "scheduler" / "scheduler.yaml").read_text())
    kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRoleBinding"}
    path = local.control_plane.workdir / "stork-scheduler-rbac.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d and d["kind"] in kinds]))
    return path


def kubectl(local: LocalCluster, *args: str) -> None:
    bin_dir = kubernetes_bin_dir(build=False)
    done = subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(local.kubeconfig), *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def check(local: LocalCluster) -> tuple[int, dict[str, list[dict]]]:
    """storkctl check -o json: its exit code and the results by check name."""
    done = subprocess.run(
        [console_script("storkctl"), "--kubeconfig", str(local.kubeconfig), "check", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] == (done.returncode == 0)
    by_name: dict[str, list[dict]] = {}
    for result in report["checks"]:
        by_name.setdefault(result["check"], []).append(result)
    return done.returncode, by_name


def failed(results: dict[str, list[dict]]) -> dict[str, list[dict]]:
    found = {name: [r for r in rs if r["verdict"] == "fail"] for name, rs in results.items()}
    return {name: rs for name, rs in found.items() if rs}


EXPECTED_CHECKS = {
    "server",
    "scheduler-config",
    "nodes-to-score",
    *(f"crd/{p}.stork.libopenstorage.org" for p in STORK_CRDS),
    *(f"crd/{p}.snapshot.storage.k8s.io" for p in SNAPSHOT_CRDS),
    "webhook-config/mutating",
    "webhook-config/validating",
    "webhook-serving",
    "webhook-tls",
    "webhook-route",
    "scheduler",
    "extender",
    "controller",
    "storage",
    *(f"rbac/stork-{c}" for c in ("extender", "webhook", "controller", "certs", "scheduler")),
}


def test_every_check_passes_on_the_install_as_shipped(install):
    local, _ = install
    code, results = check(local)
    assert set(results) == EXPECTED_CHECKS
    not_passed = {name: rs for name, rs in results.items() if any(r["verdict"] != "pass" for r in rs)}
    assert not not_passed, json.dumps(not_passed, indent=1)
    assert code == 0
    assert "v1beta1" in results["scheduler-config"][0]["detail"]
    assert "6 storage nodes, each matched" in results["storage"][0]["detail"]
    assert "refused by it" in results["webhook-route"][0]["detail"]  # the apiserver reached the webhook


# -- the faults: (inject, undo), the one check that must fail, and words its fix must hold --


def delete_crd(local: LocalCluster, stork: Stork) -> Callable[[], None]:
    local.kube().delete(CRDS, "", "schedulepolicies.stork.libopenstorage.org")
    return lambda: kubectl(local, "apply", f"--filename={REPO / 'manifests' / 'base' / 'schedule-crds.yaml'}")


def stop_webhook(local: LocalCluster, stork: Stork) -> Callable[[], None]:
    stork.stop_webhook()
    return stork.start_webhook


def wrong_ca_bundle(local: LocalCluster, stork: Stork) -> Callable[[], None]:
    kube = local.kube()
    config = kube.get(VALIDATING, "", "stork-webhook")
    assert config is not None
    original = [h["clientConfig"]["caBundle"] for h in config["webhooks"]]
    other_ca = base64.b64encode((local.control_plane.pki / "ca.crt").read_bytes()).decode()  # the apiserver's CA
    for hook in config["webhooks"]:
        hook["clientConfig"]["caBundle"] = other_ca
    kube.request("PUT", VALIDATING.object_path("", "stork-webhook"), body=config)

    def undo() -> None:
        current = kube.get(VALIDATING, "", "stork-webhook")
        assert current is not None
        for hook, bundle in zip(current["webhooks"], original, strict=True):
            hook["clientConfig"]["caBundle"] = bundle
        kube.request("PUT", VALIDATING.object_path("", "stork-webhook"), body=current)

    return undo


def stop_extender(local: LocalCluster, stork: Stork) -> Callable[[], None]:
    local.stop_process("stork-extender")
    return stork.start_extender


def unserved_scheduler_config(local: LocalCluster, stork: Stork) -> Callable[[], None]:
    kube = local.kube()
    config_map = kube.get(CONFIG_MAPS, "stork", "stork-scheduler-config")
    assert config_map is not None
    original = config_map["data"]["config.yaml"]
    # What a cluster upgrade leaves behind in reverse (stork#1808): a version this scheduler does not read.
    bad = yaml.safe_load(original) | {"apiVersion": "kubescheduler.config.k8s.io/v1"}
    kube.patch(CONFIG_MAPS, "stork", "stork-scheduler-config", {"data": {"config.yaml": yaml.safe_dump(bad)}})
    return lambda: kube.patch(CONFIG_MAPS, "stork", "stork-scheduler-config", {"data": {"config.yaml": original}})


def remove_rbac_rule(local: LocalCluster, stork: Stork) -> Callable[[], None]:
    kube = local.kube()
    role = kube.request("GET", f"{CLUSTER_ROLES}/stork-webhook")
    original = list(role["rules"])
    role["rules"] = [r for r in original if "stork.libopenstorage.org" not in r["apiGroups"]]
    assert len(role["rules"]) == len(original) - 1
    kube.request("PUT", f"{CLUSTER_ROLES}/stork-webhook", body=role)

    def undo() -> None:
        current = kube.request("GET", f"{CLUSTER_ROLES}/stork-webhook")
        current["rules"] = original
        kube.request("PUT", f"{CLUSTER_ROLES}/stork-webhook", body=current)

    return undo


FAULTS = {
    "a CRD deleted": (delete_crd, "crd/schedulepolicies.stork.libopenstorage.org", ["not installed"], "kubectl apply"),
    "the webhook stopped": (stop_webhook, "webhook-serving", ["nothing answers", "Connection refused"], "logs"),
    "a wrong caBundle": (wrong_ca_bundle, "webhook-tls", ["validating", "does not verify"], "stork-certs inject"),
    "the extender stopped": (stop_extender, "extender", ["nothing answers"], "stork-extender"),
    "an unserved scheduler configuration": (
        unserved_scheduler_config,
        "scheduler-config",
        ["kubescheduler.config.k8s.io/v1 is not read by kube-scheduler 1.20", "v1beta1"],
        "apiVersion: kubescheduler.config.k8s.io/v1beta1",
    ),
    "an RBAC rule removed": (
        remove_rbac_rule,
        "rbac/stork-webhook",
        ["get rules.stork.libopenstorage.org", "get schedulepolicies.stork.libopenstorage.org"],
        "kubectl apply -k manifests/overlays/longhorn",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_exactly_the_matching_check_fails_and_names_the_fix(install, fault):
    local, stork = install
    inject, name, details, fix = FAULTS[fault]
    undo = inject(local, stork)
    try:
        code, results = check(local)
    finally:
        undo()
    assert code == 1
    assert list(failed(results)) == [name]
    (result,) = failed(results)[name]
    for words in details:
        assert words in result["detail"]
    assert fix in result["fix"]
    code, results = check(local)
    assert not failed(results) and code == 0  # undone: the install is whole again


def test_a_crd_deleted_while_the_webhook_is_called_is_named_not_the_route(install):
    """The Rule CRD gone: its line fails and the route probe (a dry-run Rule) is skipped, not failed."""
    local, _ = install
    local.kube().delete(CRDS, "", "rules.stork.libopenstorage.org")
    try:
        _, results = check(local)
    finally:
        kubectl(local, "apply", f"--filename={REPO / 'manifests' / 'base' / 'rule-crd.yaml'}")
    assert list(failed(results)) == ["crd/rules.stork.libopenstorage.org"]
    assert results["webhook-route"][0]["verdict"] == "skip"


def test_the_table_output_says_each_verdict_and_the_fix(install):
    local, stork = install
    undo = stop_extender(local, stork)
    try:
        done = subprocess.run(
            [console_script("storkctl"), "--kubeconfig", str(local.kubeconfig), "check"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        undo()
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "VERDICT", "DETAIL"]
    extender = next(i for i, line in enumerate(lines) if line.startswith("extender "))
    assert lines[extender].split()[1] == "fail"
    assert "fix: kubectl -n stork get pods -l app.kubernetes.io/name=stork-extender" in lines[extender + 1]
    assert lines[-1].startswith(f"{len(EXPECTED_CHECKS)} checks: ") and "1 fail" in lines[-1]
