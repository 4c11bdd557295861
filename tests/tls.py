"""Certificates and TLS contexts for tests of servers that want TLS (and client certificates)."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.authority import KeyPair, create_ca, create_serving


@dataclass
class Files:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def create_client(ca: KeyPair, common_name: str) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def write_pki(folder: Path) -> Files:
    """A CA, a serving certificate for 127.0.0.1, and a client certificate, as PEM files."""
    ca = create_ca("test CA")
    server = create_serving(ca, ["localhost"], ips=["127.0.0.1"])
    client = create_client(ca, "stork-py")
    files = Files(*(folder / n for n in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")))
    files.ca.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    for pair, cert_path, key_path in (
        (server, files.server_cert, files.server_key),
        (client, files.client_cert, files.client_key),
    ):
        cert_path.write_bytes(pair.cert_pem())
        key_path.write_bytes(pair.key_pem())
    return files


def server_context(files: Files, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(files.ca)
    return context
