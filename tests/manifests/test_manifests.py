"""The install manifests: every overlay renders, passes the Kubernetes 1.30 schemas, grants no
wildcard, and runs every container locked down."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.manifests.rendering import OVERLAYS, of_kind, render

pytestmark = pytest.mark.manifests

KUBERNETES = "1.30.0"
# Kinds of other projects' CRDs, which the Kubernetes schemas cannot know: kind -> apiVersion.
FOREIGN_KINDS = {
    "Certificate": "cert-manager.io/v1",
    "Issuer": "cert-manager.io/v1",
    "VolumeSnapshotClass": "snapshot.storage.k8s.io/v1",
}
WORKLOADS = ("Deployment", "Job")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_against_kubernetes_schemas(overlay):
    docs = render(overlay)
    assert docs
    for doc in docs:
        if doc["kind"] in FOREIGN_KINDS:
            assert doc["apiVersion"] == FOREIGN_KINDS[doc["kind"]]
            continue
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_broken_manifest_fails_validation():
    deployment = dict(of_kind(render("longhorn"), "Deployment")[0])
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_wildcard_in_any_rbac_rule(overlay):
    for role in of_kind(render(overlay), "Role", "ClusterRole"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(overlay):
    for workload in of_kind(render(overlay), *WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            if workload["kind"] == "Deployment":
                assert container["livenessProbe"] and container["readinessProbe"]


def test_stork_components_run_three_or_two_replicas_spread_over_nodes_with_budgets():
    docs = render("longhorn")
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert deployments["stork-extender"]["spec"]["replicas"] == 3
    assert deployments["stork-webhook"]["spec"]["replicas"] == 3
    budgets = {d["metadata"]["name"] for d in of_kind(docs, "PodDisruptionBudget")}
    assert set(deployments) <= budgets
    for deployment in deployments.values():
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread[0]["topologyKey"] == "kubernetes.io/hostname"


def test_overlays_choose_their_driver_and_scheduler():
    config = {o: of_kind(render(o), "ConfigMap") for o in OVERLAYS}
    driver = {o: next(c for c in cms if c["metadata"]["name"] == "stork-config")["data"] for o, cms in config.items()}
    assert driver["longhorn"]["STORK_DRIVER"] == "longhorn"
    assert driver["csi"]["STORK_DRIVER"] == "csi" and driver["csi"]["STORK_CSI_DRIVER_NAME"]
    assert driver["portworx"]["STORK_DRIVER"] == "pxd" and driver["linstor"]["STORK_DRIVER"] == "linstor"
    default = render("default-scheduler")
    assert not [d for d in of_kind(default, "Deployment") if d["metadata"]["name"] == "stork-scheduler"]
    assert not of_kind(default, "MutatingWebhookConfiguration")
    scheduler_config = next(c for c in config["longhorn"] if c["metadata"]["name"] == "stork-scheduler-config")
    import yaml

    scheduler = yaml.safe_load(scheduler_config["data"]["config.yaml"])
    assert scheduler["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert scheduler["profiles"] == [{"schedulerName": "stork"}]
    (extender,) = scheduler["extenders"]
    assert extender["nodeCacheCapable"] is True and extender["filterVerb"] == "filter"
    assert extender["weight"] and extender["httpTimeout"] and extender["tlsConfig"]["caFile"]


def test_cert_manager_overlay_replaces_the_job_and_injects_the_ca():
    docs = render("cert-manager")
    assert not of_kind(docs, "Job")
    for config in of_kind(docs, "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "stork/stork-webhook"
    (serving,) = [c for c in of_kind(docs, "Certificate") if c["metadata"]["name"] == "stork-webhook"]
    assert serving["spec"]["secretName"] == "stork-tls"
    assert "stork-extender.stork.svc" in serving["spec"]["dnsNames"]


def test_longhorn_gets_a_default_snapshot_class_and_the_group_snapshot_crd_is_installed():
    docs = render("longhorn")
    (snapshot_class,) = of_kind(docs, "VolumeSnapshotClass")
    assert snapshot_class["driver"] == "driver.longhorn.io" and snapshot_class["parameters"] == {"type": "snap"}
    assert snapshot_class["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"] == "true"
    for overlay in OVERLAYS:
        crds = {d["metadata"]["name"]: d for d in of_kind(render(overlay), "CustomResourceDefinition")}
        gvs = crds["groupvolumesnapshots.stork.libopenstorage.org"]["spec"]
        assert gvs["names"]["kind"] == "GroupVolumeSnapshot" and gvs["versions"][0]["subresources"] == {"status": {}}
        columns = [c["name"] for c in gvs["versions"][0]["additionalPrinterColumns"]]
        assert columns[:2] == ["Stage", "Status"]


def test_the_validating_webhook_sees_group_snapshots_and_csi_snapshots():
    (config,) = of_kind(render("longhorn"), "ValidatingWebhookConfiguration")
    by_group: dict[str, set[str]] = {}
    for rule in config["webhooks"][0]["rules"]:
        for group in rule["apiGroups"]:
            by_group.setdefault(group, set()).update(rule["resources"])
    assert by_group == {
        "stork.libopenstorage.org": {"rules", "groupvolumesnapshots", "volumesnapshotschedules", "schedulepolicies"},
        "snapshot.storage.k8s.io": {"volumesnapshots"},
    }


def test_the_example_schedule_is_valid_as_the_webhook_sees_it():
    from pathlib import Path

    import yaml

    from storkcore.rules import rule_problems
    from webhook.schedules import schedule_policy_problems, snapshot_schedule_problems

    docs = {d["kind"]: d for d in yaml.safe_load_all(Path("manifests/examples/snapshot-schedule.yaml").read_text())}
    assert set(docs) == {"SchedulePolicy", "Rule", "VolumeSnapshotSchedule"}
    policy = docs["SchedulePolicy"]
    assert schedule_policy_problems(policy) == []
    assert rule_problems(docs["Rule"]) == []
    lookup = {policy["metadata"]["name"]: policy}.get
    assert snapshot_schedule_problems(docs["VolumeSnapshotSchedule"], lookup) == []


def _container(docs, deployment: str) -> dict:
    (found,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == deployment]
    return found["spec"]["template"]["spec"]


def test_portworx_overlay_reads_the_shared_secret_and_may_find_the_service():
    docs = render("portworx")
    config = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "stork-config")["data"]
    assert config["STORK_DRIVER"] == "pxd" and config["PX_JWT_ISSUER"]
    # The webhook too: it reads replica locations from Portworx in the background (locality at scale).
    for deployment in ("stork-extender", "stork-controller", "stork-webhook"):
        env = {e["name"]: e for e in _container(docs, deployment)["containers"][0]["env"]}
        ref = env["PX_SHARED_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "stork-px-auth", "key": "shared-secret", "optional": True}
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == "stork-portworx-endpoint"]
    assert role["metadata"]["namespace"] == "kube-system"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "resourceNames": ["portworx-service"], "verbs": ["get"]}
    ]


def test_linstor_overlay_names_the_controller_and_mounts_optional_client_certificates():
    docs = render("linstor")
    config = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "stork-config")["data"]
    assert config["STORK_DRIVER"] == "linstor" and config["LS_CONTROLLERS"].endswith(":3370")
    for deployment in ("stork-extender", "stork-controller", "stork-webhook"):
        pod = _container(docs, deployment)
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["linstor-client-tls"]["secret"] == {"secretName": "stork-linstor-client-tls", "optional": True}
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert config["STORK_LINSTOR_CLIENT_CERT"].startswith(mounts["linstor-client-tls"] + "/")


def test_the_quick_start_example_is_a_valid_deployment_on_a_longhorn_claim():
    from pathlib import Path

    import yaml

    docs = {d["kind"]: d for d in yaml.safe_load_all(Path("manifests/examples/longhorn-app.yaml").read_text())}
    for doc in docs.values():
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    claim, deployment = docs["PersistentVolumeClaim"], docs["Deployment"]
    assert claim["spec"]["storageClassName"] == "longhorn"  # the longhorn overlay's driver
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "db"}  # README's selector
