"""Certificates renewed in place on the real control plane, while pods are being admitted.

A stork instance whose serving certificate lives one minute and whose CA lives two serves
its webhook from Secret `stork/stork-rotation-tls` (projected into a folder the way kubelet
projects a Secret volume). `stork-controller` renews the serving certificate and rolls the
CA over; meanwhile a loop creates pods (dry run: the real apiserver calls the webhook over
TLS for each, nothing is stored) and counts every pod our webhook did not mutate (with the
webhook's `failurePolicy: Ignore`, a failed call shows exactly so), and a second client
opens a new TLS connection each time trusting only the configuration's caBundle.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import threading
import time
import urllib.request

import pytest
from cryptography import x509

from certs import authority as ca_tools
from localcluster import simulate
from localcluster.stork import MUTATING, STORK_NAMESPACE, VALIDATING, Stork
from storkcore.kube import DEPLOYMENTS, SECRETS, Kube
from tests.e2e.helpers import LOCAL_DRIVER_ARGS, local_claim_on, unique, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE_LABELS = {"stork-e2e/driver": "rotation"}
NAME = "stork-rotation"
CA_READER = f"{NAME}-scheduler"  # a Deployment standing for kube-scheduler, which reads ca.crt once


@pytest.fixture(scope="module")
def rotating(cluster, kube):
    stork = Stork(
        cluster.control_plane,
        "csi",
        LOCAL_DRIVER_ARGS,
        scheduler_name=NAME,
        namespace_labels=NAMESPACE_LABELS,
        tls_from_secret=True,
        certificate_days=1 / 1440,  # one minute
        ca_days=2 / 1440,
    )
    stork.start()
    cluster.storks.append(stork)
    _ca_reader(kube)
    controller = f"{NAME}-controller"
    base = cluster.start_controller(
        controller,
        "csi",
        [
            *LOCAL_DRIVER_ARGS,
            "--lease-name",
            controller,
            "--no-group-snapshots",
            "--tls-secret",
            f"{STORK_NAMESPACE}/{stork.tls_secret}",
            "--webhook-configuration",
            f"{NAME}-webhook",
            "--restart-on-ca-change",
            f"{STORK_NAMESPACE}/{CA_READER}",
            "--certificate-check-interval",
            "2",
            "--ca-trust-grace",
            "5",
        ],
    )
    yield stork, base
    cluster.stop_process(controller)
    # Its certificates expire a minute later: take the instance out of the way of later tests.
    for resource in (MUTATING, VALIDATING):
        kube.delete(resource, "", f"{NAME}-webhook")
    for process in (f"{NAME}-scheduler", f"{NAME}-webhook", f"{NAME}-extender"):
        cluster.stop_process(process)
    stork.stop()


def _ca_reader(kube: Kube) -> None:
    template = simulate.pod_template([])
    template["metadata"]["labels"] = {"app": CA_READER}
    template["spec"]["nodeSelector"] = {"stork-e2e/no-such-node": "true"}  # stays Pending: nothing runs
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": CA_READER, "namespace": STORK_NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": CA_READER}}, "template": template},
    }
    kube.create(DEPLOYMENTS, STORK_NAMESPACE, body)


class AdmissionLoop:
    """Creates pods (dry run) as fast as one client can and counts those not sent to our
    scheduler. The apiserver keeps its connection to the webhook open, so a renewed
    certificate reaches it only with a new connection; a second client therefore makes a new
    TLS connection each time, trusting only the bundle the webhook configuration holds (what
    the apiserver trusts), and counts handshakes that fail."""

    def __init__(self, kube: Kube, namespace: str, webhook_port: int) -> None:
        self.kube, self.namespace, self.port = kube, namespace, webhook_port
        self.admitted = self.handshakes = 0
        self.failed: list[str] = []
        self.failed_handshakes: list[str] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._admit, self._handshake)]

    def __enter__(self) -> AdmissionLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(30)

    def _admit(self) -> None:
        body = {"apiVersion": "v1", "kind": "Pod", **simulate.pod_template(["data"])}
        while not self._done.is_set():
            body["metadata"]["name"] = unique("p")
            try:
                pod = self.kube.request("POST", f"/api/v1/namespaces/{self.namespace}/pods", {"dryRun": "All"}, body)
            except Exception as err:  # the apiserver refusing the pod is a failure too
                self.failed.append(repr(err)[:200])
                continue
            if pod["spec"].get("schedulerName") == NAME:
                self.admitted += 1
            else:
                self.failed.append(f"{pod['metadata']['name']} kept {pod['spec'].get('schedulerName')}")
            time.sleep(0.05)

    def _handshake(self) -> None:
        while not self._done.is_set():
            bundle = base64.b64decode(_config_bundle_b64(self.kube, MUTATING)).decode()
            try:
                context = ssl.create_default_context(cadata=bundle)
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    self.handshakes += 1
            except (OSError, ssl.SSLError) as err:
                self.failed_handshakes.append(repr(err)[:200])
            time.sleep(0.1)


def _secret_files(kube: Kube, stork: Stork) -> dict[str, bytes]:
    secret = kube.get(SECRETS, STORK_NAMESPACE, stork.tls_secret)
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def _config_bundle_b64(kube: Kube, resource) -> str:
    config = kube.get(resource, "", f"{NAME}-webhook")
    return config["webhooks"][0]["clientConfig"]["caBundle"]


def _bundle(kube: Kube, resource) -> list[x509.Certificate]:
    return ca_tools.certificates_in(base64.b64decode(_config_bundle_b64(kube, resource)))


def test_certificates_renewed_and_ca_rolled_over_in_place_fail_no_admission(cluster, kube, rotating):
    stork, controller = rotating
    namespace = unique("rotation")
    cluster.ensure_namespace(namespace, NAMESPACE_LABELS)
    local_claim_on(kube, namespace, "data", "node-3")
    first = _secret_files(kube, stork)
    (first_ca,) = ca_tools.certificates_in(first["ca.crt"])
    served: set[int] = set()
    with AdmissionLoop(kube, namespace, stork.webhook_port) as loop:

        def rolled_over_and_old_ca_gone():
            served.add(_served_serial(stork))
            files = _secret_files(kube, stork)
            cas = ca_tools.certificates_in(files["ca.crt"])
            return first_ca not in cas and len(served) >= 3

        # Serving renewed at ~38 s and ~76 s; new CA trusted at ~76 s, signing 5 s later;
        # the first CA expires at 120 s and leaves the bundle.
        wait_for(rolled_over_and_old_ca_gone, 180, "renewals, a CA roll-over and the old CA's expiry")
        time.sleep(3)  # a few more admissions with the final certificates
    assert loop.failed == []
    assert loop.failed_handshakes == []
    assert loop.admitted > 100 and loop.handshakes > 100
    print(f"admitted {loop.admitted} pods, {loop.handshakes} new TLS connections, no failure")

    files = _secret_files(kube, stork)
    (new_ca,) = ca_tools.certificates_in(files["ca.crt"])
    serving = ca_tools.certificates_in(files["tls.crt"])[0]
    assert ca_tools.signed_by(serving, new_ca)
    assert ca_tools.dns_names_of(serving) == ca_tools.dns_names_of(ca_tools.certificates_in(first["tls.crt"])[0])
    assert _bundle(kube, MUTATING) == _bundle(kube, VALIDATING) == [new_ca]
    # The Deployment that reads ca.crt only at start was rolled to trust the new CA.
    reader = kube.get(DEPLOYMENTS, STORK_NAMESPACE, CA_READER)
    assert "stork.libopenstorage.org/ca-bundle" in reader["spec"]["template"]["metadata"]["annotations"]
    # The server presents what the Secret holds, and says when it expires.
    assert _served_serial(stork) == serving.serial_number
    expiry = _gauge(stork.metrics("webhook"), "stork_tls_serving_certificate_expiry_timestamp_seconds")
    assert expiry == serving.not_valid_after_utc.timestamp()
    metrics = _controller_metrics(controller)
    assert _gauge(metrics, 'stork_certificate_renewals_total{certificate="serving"}') >= 2
    assert _gauge(metrics, 'stork_certificate_renewals_total{certificate="ca"}') >= 1
    assert _gauge(metrics, "stork_certificate_renewal_errors_total") == 0
    reasons = {e["reason"] for e in _secret_events(kube, stork)}
    assert {"CertificateRenewed", "CertificateAuthorityTrusted", "CertificateAuthorityRolledOver"} <= reasons


def _served_serial(stork: Stork) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", stork.webhook_port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def _controller_metrics(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        return resp.read().decode()


def _gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.M)
    assert found, f"{name} not in metrics"
    return float(found.group(1))


def _secret_events(kube: Kube, stork: Stork) -> list[dict]:
    found = kube.request(
        "GET",
        f"/api/v1/namespaces/{STORK_NAMESPACE}/events",
        {"fieldSelector": f"involvedObject.name={stork.tls_secret}"},
    )
    return found["items"]
