"""The container image, built here without a daemon, runs stork-py on the real node.

`scripts/build-image.sh` builds the image from Debian's packages; it is loaded into the real
node's containerd and the extender and the webhook run from it as pods with the shipped
manifests' container settings (non-root, read-only root filesystem, probes, the TLS Secret
mounted by the real kubelet). The real apiserver calls the containerised webhook, the real
scheduler the containerised extender, and a pod on a local volume lands and runs.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from localcluster import storkpods
from localcluster.binaries import REPO
from localcluster.realnode import NODE_NAME, local_volume_claim, run_on_real_node
from localcluster.stork import Stork
from localcluster.storkimage import CONSOLE_SCRIPTS, IMAGE
from tests.e2e.helpers import LOCAL_DRIVER_ARGS, pods_of, unique, wait_for

pytestmark = pytest.mark.realnode

NAME = "stork-image"
FIRST_SERIAL: dict[str, int] = {}
NAMESPACE_LABELS = {"stork-e2e/driver": "image"}


@pytest.fixture(scope="module")
def containerised(cluster, kube, real_node):
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-image.sh"), "--out", str(cluster.control_plane.workdir / "image")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    archive = Path(built.stdout.strip().splitlines()[-1])  # the script's last line: the archive
    real_node.import_image(archive)
    stork = Stork(
        cluster.control_plane,
        "csi",
        LOCAL_DRIVER_ARGS,
        scheduler_name=NAME,
        namespace_labels=NAMESPACE_LABELS,
        image=IMAGE,
        ready_timeout=180,
        certificate_days=4 / 1440,  # four minutes: the controller renews it during this module
    )
    cluster.storks.append(stork)
    try:
        start(cluster, kube, stork)
        yield stork
    finally:
        stork.stop_pods()
        storkpods.stop_components(kube, NAME, ["controller"])
        cluster.stop_process(f"{NAME}-scheduler")


def start(cluster, kube, stork: Stork) -> None:
    stork.start()
    FIRST_SERIAL["webhook"] = _served_serial(stork.webhook_port)
    # The controller too: it reads the same TLS Secret and reports its expiry.
    storkpods.run_components(
        kube,
        NAME,
        IMAGE,
        {
            "controller": [
                *LOCAL_DRIVER_ARGS,
                "--lease-name",
                f"{NAME}-controller",
                "--no-group-snapshots",
                "--tls-secret",
                f"stork/{stork.tls_secret}",
                "--webhook-configuration",
                f"{NAME}-webhook",
                "--restart-on-ca-change",
                "",
                "--certificate-check-interval",
                "2",
                "--renew-fraction",
                "0.25",  # about 40 s after issue, so the kubelet's next sync (about a minute) lands in time
            ]
        },
        {"STORK_DRIVER": "csi"},
        stork.tls_secret,
        cluster.kubeconfig.read_bytes(),
    )


def test_a_pod_is_placed_through_the_containerised_webhook_and_extender(cluster, kube, real_node, containerised):
    namespace = unique("image")
    cluster.ensure_namespace(namespace, NAMESPACE_LABELS)
    local_volume_claim(kube, namespace, "data", real_node.folder / "volumes" / namespace)
    run_on_real_node(kube, namespace, "notes", "data", "echo hello > /data/hello && exec sleep 3600")
    pod = wait_for(
        lambda: next((p for p in pods_of(kube, namespace, "notes") if p["status"].get("phase") == "Running"), None),
        120,
        "the pod to run",
    )
    assert pod["spec"]["schedulerName"] == NAME  # the webhook in the container
    assert pod["spec"]["nodeName"] == NODE_NAME
    filters = re.search(
        r'^stork_extender_requests_total\{code="200",mode="names",verb="filter"\} (\S+)', containerised.metrics(), re.M
    )
    assert filters and float(filters.group(1)) >= 1  # the extender in the container answered the scheduler


def test_the_components_run_as_the_manifests_say(kube, real_node, containerised):
    for component in ("extender", "webhook", "controller"):
        (pod,) = wait_for(lambda c=component: _ready_pods(kube, f"{NAME}-{c}"), 120, f"{component} ready")
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] and status["restartCount"] == 0  # HTTPS probes pass
        pid = real_node.task_pids()[status["containerID"].split("://")[1]]
        uid_line = next(
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
        )
        assert uid_line.split()[1:] == ["65532"] * 4  # non-root, as the image and the manifests say
        mounts = Path(f"/proc/{pid}/mounts").read_text().splitlines()
        root = next(line.split() for line in mounts if line.split()[1] == "/")
        assert "ro" in root[3].split(",")  # read-only root filesystem
        assert pod["spec"]["containers"][0]["image"] == IMAGE


def test_the_containerised_controller_reads_the_tls_secret(kube, containerised):
    wait_for(lambda: _ready_pods(kube, f"{NAME}-controller"), 120, "the controller ready")
    served = x509.load_pem_x509_certificate((containerised.tls / "tls.crt").read_bytes())

    def reported() -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{storkpods.PORTS['controller']}/metrics", timeout=5) as resp:
            found = re.search(
                r'^stork_certificate_expiry_timestamp_seconds\{certificate="serving"\} (\S+)',
                resp.read().decode(),
                re.M,
            )
        return float(found.group(1)) if found else None

    assert wait_for(reported, 60, "the expiry in the controller's metrics") == served.not_valid_after_utc.timestamp()


def test_the_image_has_every_console_script(kube, real_node, containerised):
    (pod,) = _ready_pods(kube, f"{NAME}-extender")
    pid = real_node.task_pids()[pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]]
    for script in CONSOLE_SCRIPTS:
        assert Path(f"/proc/{pid}/root/usr/local/bin/{script}").exists(), script


def _ready_pods(kube, name: str) -> list[dict]:
    found = kube.request("GET", "/api/v1/namespaces/stork/pods", {"labelSelector": f"app.kubernetes.io/name={name}"})
    return [
        p
        for p in found["items"]
        if not p["metadata"].get("deletionTimestamp")
        and all(s.get("ready") for s in p.get("status", {}).get("containerStatuses") or [{}])
    ]


def test_the_webhook_serves_the_renewed_certificate_from_the_kubelet_mounted_secret(kube, containerised):
    """The controller renews the serving certificate in the Secret; the real kubelet updates
    the pod's Secret volume; the webhook presents the new certificate without a restart."""

    def renewed() -> x509.Certificate | None:
        secret = kube.get(storkpods.SECRETS, "stork", containerised.tls_secret)
        current = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
        if current.serial_number == FIRST_SERIAL["webhook"]:
            return None
        return current if _served_serial(containerised.webhook_port) == current.serial_number else None

    current = wait_for(renewed, 240, "the webhook to present the renewed certificate")
    (pod,) = _ready_pods(kube, f"{NAME}-webhook")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    served_expiry = re.search(
        r"^stork_tls_serving_certificate_expiry_timestamp_seconds (\S+)$", containerised.metrics("webhook"), re.M
    )
    assert served_expiry and float(served_expiry.group(1)) == current.not_valid_after_utc.timestamp()


def _served_serial(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
