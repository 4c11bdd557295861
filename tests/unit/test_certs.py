"""Certificates: chain, names, key usage, file modes, rotation keeping the CA."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import authority as ca_tools
from certs.cli import main as certs_main
from certs.cli import secret_body


def run(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        certs_main(list(argv))
    return done.value.code


@pytest.fixture
def issued(tmp_path):
    assert (
        run(
            "create",
            "--service",
            "stork-webhook",
            "--namespace",
            "stork",
            "--out",
            str(tmp_path),
            "--ip",
            "127.0.0.1",
            "--host",
            "localhost",
        )
        == 0
    )
    return tmp_path


def test_chain_verifies_and_names_are_present(issued):
    ca = ca_tools.load(issued / "ca.crt", issued / "ca.key")
    serving = ca_tools.load(issued / "tls.crt", issued / "tls.key")
    serving.cert.verify_directly_issued_by(ca.cert)
    assert ca_tools.dns_names_of(serving.cert) == [
        "stork-webhook",
        "stork-webhook.stork",
        "stork-webhook.stork.svc",
        "stork-webhook.stork.svc.cluster.local",
        "localhost",
    ]
    assert ca_tools.ips_of(serving.cert) == ["127.0.0.1"]
    assert isinstance(serving.key, ec.EllipticCurvePrivateKey) and serving.key.curve.name == "secp256r1"


def test_key_usage(issued):
    ca = ca_tools.load(issued / "ca.crt", issued / "ca.key").cert
    serving = ca_tools.load(issued / "tls.crt", issued / "tls.key").cert
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = serving.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert list(serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


def test_key_files_are_private(issued):
    for name, mode in (("ca.key", 0o600), ("tls.key", 0o600), ("ca.crt", 0o644), ("tls.crt", 0o644)):
        assert stat.S_IMODE((issued / name).stat().st_mode) == mode, name


def test_rotate_renews_only_when_close_to_expiry_and_keeps_the_ca(issued):
    before = (issued / "tls.crt").read_bytes()
    assert run("rotate", "--dir", str(issued), "--before", "30") == 0
    assert (issued / "tls.crt").read_bytes() == before  # a year left: nothing to do
    ca_pem = (issued / "ca.crt").read_bytes()
    assert run("rotate", "--dir", str(issued), "--before", "400", "--days", "90") == 0
    renewed = ca_tools.load(issued / "tls.crt", issued / "tls.key")
    assert (issued / "ca.crt").read_bytes() == ca_pem
    renewed.cert.verify_directly_issued_by(ca_tools.load(issued / "ca.crt", issued / "ca.key").cert)
    assert renewed.expires() - dt.datetime.now(dt.UTC) < dt.timedelta(days=91)
    assert "stork-webhook.stork.svc" in ca_tools.dns_names_of(renewed.cert)
    assert ca_tools.ips_of(renewed.cert) == ["127.0.0.1"]


def test_secret_is_kubernetes_tls_with_ca(issued):
    body = secret_body("stork-webhook-tls", "stork", issued)
    assert body["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(body["data"])


def test_errors_are_reported_not_raised(tmp_path):
    assert run("rotate", "--dir", str(tmp_path / "missing"), "--before", "1") == 1
