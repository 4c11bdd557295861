"""Issuing certificates with `cryptography`: a CA and serving certificates (ECDSA P-256)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
CLOCK_SKEW = dt.timedelta(minutes=5)  # valid a little before "now": clocks differ between nodes


@dataclass
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    def expires(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def service_names(service: str, namespace: str) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _builder(
    subject: str, issuer: x509.Name, public_key, days: float, now: dt.datetime | None
) -> x509.CertificateBuilder:
    now = now or _now()
    validity = dt.timedelta(days=days)
    if validity <= dt.timedelta(0):
        raise ValueError("a certificate must be valid for some time")
    # Backdated for clock skew, but by at most a tenth of its life: a certificate valid for
    # minutes (tests, demos) must not spend most of its life before it was issued.
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - min(CLOCK_SKEW, validity / 10))
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    # ECDSA keys sign (TLS handshakes, or certificates for the CA); they never encipher.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def create_ca(common_name: str = "stork-py webhook CA", days: float = 3650, now: dt.datetime | None = None) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(common_name, name, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def create_serving(
    ca: KeyPair, dns_names: list[str], ips: list[str] | None = None, days: float = 365, now: dt.datetime | None = None
) -> KeyPair:
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips or [])]
    cert = (
        _builder(dns_names[0], ca.cert.subject, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write beside the target, then rename: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(out: Path, ca: KeyPair, serving: KeyPair) -> None:
    """Keys 0600, certificates 0644, each file replaced atomically. A server reloading
    between the key and the certificate sees a mismatched pair and keeps the old one."""
    write_atomically(out / CA_KEY, ca.key_pem(), 0o600)
    write_atomically(out / CA_CERT, ca.cert_pem(), 0o644)
    write_atomically(out / TLS_KEY, serving.key_pem(), 0o600)
    write_atomically(out / TLS_CERT, serving.cert_pem(), 0o644)


def load(path_cert: Path, path_key: Path) -> KeyPair:
    cert = x509.load_pem_x509_certificate(path_cert.read_bytes())
    key = serialization.load_pem_private_key(path_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path_key} is not an ECDSA key")
    return KeyPair(key, cert)


def dns_names_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def ips_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def expires_within(pair: KeyPair, days: float) -> bool:
    return pair.expires() - _now() < dt.timedelta(days=days)


def certificates_in(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order (a CA bundle holds two during a roll-over)."""
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def bundle_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def key_from_pem(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an ECDSA key")
    return key


def lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def validity(cert: x509.Certificate) -> dt.timedelta:
    """The life it was issued for: its validity period less the backdating `_builder` adds."""
    period = lifetime(cert)
    return max(period / 1.1, period - CLOCK_SKEW)


def renewal_due_at(cert: x509.Certificate, fraction: float) -> dt.datetime:
    """The moment `fraction` of the certificate's life has passed."""
    return cert.not_valid_before_utc + lifetime(cert) * fraction


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def same_public_key(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    return key.public_key() == cert.public_key()
