"""`stork-webhook` as a user runs it: under gunicorn, over TLS from `stork-certs`.

A client that trusts only the generated CA and checks the hostname gets through;
the certificate files are rotated while a client loops requests, with no failure.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest
import requests
from cryptography import x509

from tests.integration.test_extender_server import write_kubeconfig
from tests.processes import Service, console_script, free_port

pytestmark = pytest.mark.integration


def certs(*argv: str) -> None:
    subprocess.run([console_script("stork-certs"), *argv], check=True, capture_output=True, timeout=60)


@pytest.fixture
def webhook(tmp_path):
    tls = tmp_path / "tls"
    certs("create", "--service", "stork-webhook", "--namespace", "stork", "--out", str(tls), "--host", "localhost")
    port = free_port()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    service = Service(
        [
            console_script("stork-webhook"),
            "--driver",
            "longhorn",
            "--kubeconfig",
            kubeconfig,
            "--bind",
            f"127.0.0.1:{port}",
            "--certfile",
            str(tls / "tls.crt"),
            "--keyfile",
            str(tls / "tls.key"),
        ],
        tmp_path / "webhook.log",
    )
    base = f"https://localhost:{port}"
    try:
        service.wait_http(base + "/livez", verify=str(tls / "ca.crt"))
        yield service, base, tls
    finally:
        service.stop()


def pod_review(uid: str) -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "default",
            "operation": "CREATE",
            "object": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }


def test_client_trusting_only_the_ca_with_hostname_check(webhook):
    _, base, tls = webhook
    answer = requests.post(base + "/mutate", json=pod_review("u1"), verify=str(tls / "ca.crt"), timeout=5)
    assert answer.ok and answer.json()["response"] == {"uid": "u1", "allowed": True}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(base + "/livez", verify=True, timeout=5)  # the system trust store does not know our CA
    wrong_name = base.replace("localhost", "127.0.0.1")  # not in the certificate
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(wrong_name + "/livez", verify=str(tls / "ca.crt"), timeout=5)


def _handshake(port: int, ca: str, newest: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=ca)
    # Let this client offer old versions at all (OpenSSL 3 refuses them by default),
    # so that a refusal can only come from the server.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = newest
    with (
        socket.create_connection(("localhost", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls_sock,
    ):
        return tls_sock.version() or ""


def assert_refuses_tls_below_1_2(base: str, ca: str) -> None:
    port = int(base.rsplit(":", 1)[1])
    assert _handshake(port, ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        _handshake(port, ca, ssl.TLSVersion.TLSv1_1)


def test_tls_below_1_2_is_refused(webhook):
    _, base, tls = webhook
    assert_refuses_tls_below_1_2(base, str(tls / "ca.crt"))


def test_rotation_under_load_fails_no_request(webhook):
    service, base, tls = webhook
    ca = str(tls / "ca.crt")
    first_serial = _serial(base)
    failures: list[str] = []
    done = threading.Event()
    count = 0

    def loop() -> None:
        nonlocal count
        while not done.is_set():
            try:
                # A new connection each time, so every request does a handshake.
                with requests.Session() as session:
                    resp = session.post(base + "/mutate", json=pod_review(f"u{count}"), verify=ca, timeout=5)
                if resp.status_code != 200:
                    failures.append(f"HTTP {resp.status_code}")
            except requests.RequestException as err:
                failures.append(repr(err))
            count += 1

    workers = [threading.Thread(target=loop) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    for _ in range(3):
        certs("rotate", "--dir", str(tls), "--before", "4000")  # always renews
        time.sleep(0.7)
    done.set()
    for w in workers:
        w.join(10)
    assert failures == []
    assert count > 20
    assert _serial(base) != first_serial  # new connections get the new certificate
    logged = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    assert sum(1 for r in logged if r.get("message") == "TLS certificate loaded") >= 2
    # The expiry the server reports is the one of the certificate it now presents.
    served = x509.load_pem_x509_certificate((tls / "tls.crt").read_bytes()).not_valid_after_utc.timestamp()
    metrics = requests.get(base + "/metrics", verify=ca, timeout=5).text
    reported = [
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("stork_tls_serving_certificate_expiry_timestamp_seconds ")
    ]
    assert reported == [served]


def _serial(base: str) -> int:
    port = int(base.rsplit(":", 1)[1])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("localhost", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls_sock,
    ):
        der = tls_sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def _admissions_counted(base: str, ca: str) -> float:
    """stork_webhook_admissions_total summed over its labels, from one scrape on a new connection."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(base + "/metrics", verify=ca, timeout=5, headers={"Connection": "close"}).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "stork_webhook_admissions_total"
    )


def test_every_scrape_counts_what_both_workers_answered(webhook):
    """Two gunicorn workers answer; a scrape reaches one of them, and it reports both."""
    _, base, tls = webhook
    ca = str(tls / "ca.crt")
    for i in range(24):  # a new connection each: the kernel spreads them over the workers
        answer = requests.post(
            base + "/mutate", json=pod_review(f"u{i}"), verify=ca, timeout=5, headers={"Connection": "close"}
        )
        assert answer.ok
    for _ in range(8):
        assert _admissions_counted(base, ca) == 24
