"""`stork-extender --server granian`: TLS from stork-certs; a renewed certificate is picked up
by a new worker that serves only once ready, while clients keep connecting."""

from __future__ import annotations

import re
import socket
import ssl
import sys
import threading
import time

import pytest
import requests
from cryptography import x509

from tests.integration.test_webhook_server import _serial, assert_refuses_tls_below_1_2, certs
from tests.processes import Service, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path):
    tls = tmp_path / "tls"
    certs("create", "--service", "s", "--namespace", "n", "--out", str(tls), "--host", "localhost")
    port = free_port()
    service = Service(
        [sys.executable, "-m", "tests.integration.granian_app", f"127.0.0.1:{port}", *_pair(tls)],
        tmp_path / "granian.log",
    )
    base = f"https://localhost:{port}"
    try:
        service.wait_http(base + "/readyz", verify=str(tls / "ca.crt"), status=200)
        yield service, base, tls
    finally:
        service.stop()


def test_renewed_certificate_is_served_with_no_failed_request(server):
    _, base, tls = server
    ca = str(tls / "ca.crt")
    before = _serial(base)
    failures: list[str] = []
    answers: list[dict] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                with requests.Session() as session:  # a new connection, so a new handshake, each time
                    resp = session.get(base + "/who", verify=ca, timeout=5)
                if resp.status_code != 200:
                    failures.append(f"HTTP {resp.status_code}")
                else:
                    answers.append(resp.json())
            except requests.RequestException as err:
                failures.append(repr(err))

    clients = [threading.Thread(target=loop) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    certs("rotate", "--dir", str(tls), "--before", "4000")  # always renews
    renewed = x509.load_pem_x509_certificate((tls / "tls.crt").read_bytes()).serial_number
    deadline = time.monotonic() + 20
    while _serial(base) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # past the overlap: the old worker has stopped
    done.set()
    for client in clients:
        client.join(10)
    # What can fail: a connection the old worker had accepted when it stopped (dropped, before or
    # during its handshake; at most one per client). Never a certificate check (every certificate
    # served was valid and trusted), never
    # an error answer (a new worker serves only once ready).
    assert len(failures) <= len(clients)
    dropped = ("RemoteDisconnected", "ConnectionResetError", "SSLEOFError")  # not SSLCertVerificationError
    assert all(any(kind in f for kind in dropped) for f in failures), failures
    assert before != renewed == _serial(base)
    assert all(a["ready"] for a in answers)  # a new worker took requests only once ready
    assert len({a["pid"] for a in answers}) == 2  # the old worker, then the new one
    assert len(answers) > 50
    # The new worker's /metrics counts the old worker's answers too: no counter reset at renewal.
    counted = re.search(r"^answers_total (\S+)$", requests.get(base + "/metrics", verify=ca, timeout=5).text, re.M)
    assert counted and len(answers) <= float(counted.group(1)) <= len(answers) + len(failures)


def test_tls_below_1_2_is_refused(server):
    _, base, tls = server
    assert_refuses_tls_below_1_2(base, str(tls / "ca.crt"))


def test_speaks_http_1_1_even_to_a_client_offering_http_2(server):
    _, base, tls = server
    host, port = base.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.set_alpn_protocols(["h2", "http/1.1"])  # as Go's HTTP client (kube-scheduler) offers
    raw = socket.create_connection((host, int(port)), timeout=5)
    with context.wrap_socket(raw, server_hostname=host) as conn:
        assert conn.selected_alpn_protocol() == "http/1.1"


def _pair(tls) -> list[str]:
    return [str(tls / "tls.crt"), str(tls / "tls.key")]
