"""`helm install`, `helm upgrade` and `helm uninstall` of charts/stork-py on a control plane of
its own (Helm 4 from scripts/helm.sh, against the local 1.20 apiserver).

Nothing here runs container images, so the chart's workloads are run the way a kubelet would
run them, from the release's own objects: the certificates Job's script, and the extender's,
the webhook's and the scheduler's command lines and configuration (with the Secret's files
where the pods mount them, and this machine's address where they listen). Their pods, which
the default scheduler bound to simulated nodes, are marked Running and Ready at that address,
so the chart's Services get endpoints from the real endpoints controller and the apiserver
calls the webhook through the chart's Service. `--no-hooks` because the certificates Job (a
post-install hook) cannot run here; its script runs instead.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import simulate
from localcluster.binaries import REPO, helm
from localcluster.cluster import LocalCluster, six_nodes
from localcluster.processes import outward_address, wait_until
from localcluster.snapshots import CRDS, snapshot_crds
from localcluster.stork import MUTATING, VALIDATING, console_script
from storkcore.kube import CONFIG_MAPS, DEPLOYMENTS, PODS, SECRETS, ApiError, Kube, Resource
from storkctl.reach import Target, Unreachable, https, service_target, url_target
from tests.e2e.helpers import bound_pod, longhorn_workload, wait_for

pytestmark = pytest.mark.e2e

CHART = REPO / "charts" / "stork-py"
READY_CONDITIONS = ("Initialized", "ContainersReady", "Ready", "PodScheduled")
NAMESPACE = "stork"
VALUES = [
    "driver.name=longhorn",
    "scheduler.configApiVersion=kubescheduler.config.k8s.io/v1beta1",  # what kube-scheduler 1.20 reads
    "extender.replicas=1",
    "webhook.replicas=1",
    "controller.replicas=1",
    "scheduler.replicas=1",
    "scheduler.image.tag=v1.20.2",  # the cluster's version, as the chart asks
]


class Release:
    """The release's objects and the processes that stand in for its pods."""

    def __init__(self, local: LocalCluster, host: str) -> None:
        self.local, self.host = local, host
        self.kube = local.kube()
        self.tls = local.control_plane.workdir / "helm-tls"

    def helm(self, *args: str) -> str:
        done = subprocess.run(
            [helm(), "--kubeconfig", str(self.local.kubeconfig), "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def objects(self, what: str = "manifest") -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.helm("get", what, "stork")) if d]

    def run_certificates_job(self) -> None:
        """The post-install Job's script, as its pod would run it (its /tmp is a folder here)."""
        (job,) = [d for d in self.objects("hooks") if d["kind"] == "Job"]
        script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
        work = self.local.control_plane.workdir / "helm-certs"
        work.mkdir(exist_ok=True)
        script = script.replace("/tmp/tls", str(work / "tls"))
        script = script.replace("stork-certs create", f"stork-certs create --ip {self.host}")  # the address used here
        bin_dir = Path(console_script("stork-certs")).parent
        env = {"KUBECONFIG": str(self.local.kubeconfig), "PATH": f"{bin_dir}:/usr/bin:/bin"}
        done = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def mount_tls_secret(self) -> None:
        secret = self.kube.get(SECRETS, NAMESPACE, "stork-tls")
        assert secret is not None
        self.tls.mkdir(exist_ok=True)
        for key, value in secret["data"].items():
            (self.tls / key).write_bytes(base64.b64decode(value))

    def released(self, kind: str, name: str) -> dict[str, Any]:
        return next(d for d in self.objects() if d["kind"] == kind and d["metadata"]["name"] == name)

    def run_component(self, component: str) -> None:
        """stork-<component> with its container's command, args and ConfigMap environment."""
        deployment = self.released("Deployment", f"stork-{component}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        config = self.kube.get(CONFIG_MAPS, NAMESPACE, "stork-config")
        assert config is not None
        args = [a.replace("/tls/", f"{self.tls}/").replace("0.0.0.0:", f"{self.host}:") for a in container["args"]]
        argv = [console_script(container["command"][0]), *args, "--kubeconfig", str(self.local.kubeconfig)]
        self.local.control_plane.procs.start(f"helm-{component}", argv, env=dict(config["data"]))
        self.mark_pods_ready(component)

    def run_server(self, component: str) -> None:
        """The extender or the webhook, until it answers through its Service's endpoint."""
        self.run_component(component)
        service = self.released("Service", f"stork-{component}")
        port = service["spec"]["ports"][0]["port"]
        name = f"stork-{component}"
        target = wait_for(lambda: _reachable(lambda: service_target(self.kube, NAMESPACE, name, port)), 60, name)
        context = ssl.create_default_context(cafile=str(self.tls / "ca.crt"))
        wait_until(lambda: https(target, context, path="/readyz").status == 200, 60, f"stork-{component} ready")

    def mark_pods_ready(self, component: str) -> None:
        """What a kubelet reports once the container runs: Running, Ready, at this address."""
        selector = f"app.kubernetes.io/name=stork-{component}"

        def bound() -> list[dict]:
            pods = self.kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", {"labelSelector": selector})
            found = [
                p for p in pods["items"] if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
            ]
            return found

        for pod in wait_for(bound, 60, f"a bound stork-{component} pod"):
            status = {
                "phase": "Running",
                "podIP": self.host,
                "podIPs": [{"ip": self.host}],
                "conditions": [{"type": t, "status": "True"} for t in READY_CONDITIONS],
                "containerStatuses": [
                    {"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"], "imageID": "",
                     "state": {"running": {"startedAt": simulate.now()}}}
                    for c in pod["spec"]["containers"]
                ],
            }  # fmt: skip
            self.kube.patch(PODS, NAMESPACE, pod["metadata"]["name"], {"status": status}, subresource="status")

    def run_scheduler(self) -> None:
        """kube-scheduler with the chart's configuration; the Service name resolved (no cluster
        DNS here) to its endpoint, TLS still checked for that name, the CA file from the Secret."""
        config_map = self.kube.get(CONFIG_MAPS, NAMESPACE, "stork-scheduler-config")
        assert config_map is not None
        config = yaml.safe_load(config_map["data"]["config.yaml"])
        (extender,) = config["extenders"]
        url = extender["urlPrefix"]
        target = wait_for(lambda: _reachable(lambda: url_target(self.kube, url)), 60, f"an endpoint for {url}")
        extender["urlPrefix"] = f"https://{target.address}:{target.port}"
        extender["tlsConfig"] = {"caFile": str(self.tls / "ca.crt"), "serverName": target.server_name}
        self.local.control_plane.run_scheduler("helm-scheduler", config)


def _reachable(resolve: Callable[[], Target]) -> Target | None:
    try:
        return resolve()
    except Unreachable:  # no ready endpoint yet
        return None


@pytest.fixture(scope="module")
def release() -> Iterator[Release]:
    local = LocalCluster.create()
    try:
        local.start(with_snapshot_crds=False)  # the chart installs stork's CRDs
        kube = local.kube()
        for crd in snapshot_crds():  # the CSI snapshot CRDs are the cluster's, not the chart's
            kube.create(CRDS, "", crd)
        local.add_nodes(six_nodes())
        simulate.longhorn_class(kube)
        yield Release(local, outward_address())
    finally:
        local.stop()


def test_helm_install_places_a_pod_next_to_its_data_through_the_charts_webhook_and_extender(release):
    out = release.helm(
        "install", "stork", str(CHART), "--create-namespace", "--no-hooks", *[f"--set={v}" for v in VALUES]
    )
    assert "storkctl check -n stork" in out  # the NOTES
    crds = {
        f"{p}.stork.libopenstorage.org"
        for p in ("rules", "groupvolumesnapshots", "volumesnapshotschedules", "schedulepolicies")
    }
    assert all(release.kube.get(CRDS, "", name) for name in crds)
    release.run_certificates_job()
    release.mount_tls_secret()
    release.run_server("extender")
    release.run_server("webhook")
    release.run_scheduler()
    release.run_component("controller")
    kube = release.kube
    release.local.ensure_namespace("helm-app")
    app, _ = longhorn_workload(kube, "helm-app", ["node-2", "node-4"])
    pod = bound_pod(kube, "helm-app", app, timeout=90)
    assert pod["spec"]["schedulerName"] == "stork"  # the chart's webhook, called through its Service
    assert pod["spec"]["nodeName"] in ("node-2", "node-4")  # the chart's scheduler asked the chart's extender
    bundle = _bundles(kube)
    assert bundle["validating"] and bundle["validating"] == bundle["mutating"]  # the Job's script injected it


def test_the_installed_chart_passes_storkctl_check(release):
    def passed() -> dict | None:
        done = subprocess.run(
            [console_script("storkctl"), "--kubeconfig", str(release.local.kubeconfig), "check", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = json.loads(done.stdout)
        return report if report["passed"] and done.returncode == 0 else None

    report = wait_for(passed, 60, "storkctl check to pass")  # the controller takes its Lease within seconds
    verdicts = {r["check"]: r["verdict"] for r in report["checks"]}
    assert set(verdicts.values()) == {"pass"}, verdicts
    assert "rbac/stork-certs" in verdicts and "webhook-route" in verdicts


def test_helm_upgrade_changes_what_it_says_and_keeps_the_injected_ca(release):
    before = _bundles(release.kube)
    release.helm("upgrade", "stork", str(CHART), "--no-hooks", *[f"--set={v}" for v in VALUES],
                 "--set=scheduler.mode=default-scheduler", "--set=extraConfig.STORK_SCORE_MODE=normalized")  # fmt: skip
    kube = release.kube
    assert kube.get(MUTATING, "", "stork-webhook") is None  # no second scheduler: nothing to send pods to
    assert kube.get(DEPLOYMENTS, NAMESPACE, "stork-scheduler") is None
    config = kube.get(CONFIG_MAPS, NAMESPACE, "stork-config")
    assert config and config["data"]["STORK_SCORE_MODE"] == "normalized"
    assert _bundles(kube)["validating"] == before["validating"]  # not Helm's field: the upgrade leaves it
    release.local.ensure_namespace("helm-app-after")
    app, _ = longhorn_workload(kube, "helm-app-after", ["node-1", "node-3"])
    pod = bound_pod(kube, "helm-app-after", app, timeout=90)
    assert pod["spec"]["schedulerName"] == "default-scheduler"


def test_helm_uninstall_leaves_no_stork_object_but_the_crds(release):
    objects = release.objects()
    release.helm("uninstall", "stork", "--wait", "--timeout", "120s")
    kube = release.kube
    left = [(d["kind"], d["metadata"]["name"]) for d in objects if _exists(kube, d)]
    assert left == []

    def secret_gone() -> bool:  # the Job's Secret: owned by stork-config, collected with it
        return kube.get(SECRETS, NAMESPACE, "stork-tls") is None

    wait_until(secret_gone, 60, "Secret stork-tls to be garbage-collected")
    assert kube.get(CRDS, "", "rules.stork.libopenstorage.org") is not None  # Helm keeps CRDs


def _exists(kube: Kube, doc: dict[str, Any]) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    plural = doc["kind"].lower() + ("es" if doc["kind"].endswith("s") else "s")
    resource = Resource(group, version, plural)
    try:
        return kube.get(resource, doc["metadata"].get("namespace", ""), doc["metadata"]["name"]) is not None
    except ApiError as err:
        return err.status != 404


def _bundles(kube: Kube) -> dict[str, str]:
    found = {}
    for kind, resource in (("mutating", MUTATING), ("validating", VALIDATING)):
        config = kube.get(resource, "", "stork-webhook")
        found[kind] = config["webhooks"][0]["clientConfig"].get("caBundle", "") if config else ""
    return found
