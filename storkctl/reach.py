"""Reaching stork-py's servers the way their clients do: a URL or a Service (resolved through
its Endpoints, since `*.svc` names resolve only inside the cluster), over TLS checked against a
given CA bundle and the name the client verifies."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from storkcore import objects
from storkcore.kube import ENDPOINTS, SERVICES, Resource

SERVICE_HOST = re.compile(r"^(?P<name>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)\.svc(\.cluster\.local)?\.?$")


class Reader(Protocol):
    """Where objects are read from: a Kube, or a cache in front of one."""

    def get(self, resource: Resource, namespace: str, name: str) -> dict | None: ...


class Unreachable(Exception):
    """Why a server cannot be reached; the text is shown to the user as is."""


@dataclass(frozen=True)
class Target:
    address: str  # what to connect to
    port: int
    server_name: str  # the name the client verifies in the certificate
    path: str = ""  # the URL's path prefix
    via: str = ""  # how the address was found, for messages

    def describe(self) -> str:
        return f"{self.address}:{self.port}" + (f" ({self.via})" if self.via else "")


def service_target(kube: Reader, namespace: str, name: str, port: int, path: str = "") -> Target:
    """The first ready endpoint behind a Service port, as the apiserver (with endpoint routing)
    and kube-proxy would pick one."""
    service = kube.get(SERVICES, namespace, name)
    if service is None:
        raise Unreachable(f"Service {namespace}/{name} does not exist")
    ports = [p for p in objects.items(service, "spec", "ports") if p.get("port") == port]
    if not ports:
        raise Unreachable(f"Service {namespace}/{name} has no port {port}")
    port_name = ports[0].get("name") or ""
    endpoints = kube.get(ENDPOINTS, namespace, name) or {}
    for subset in objects.items(endpoints, "subsets"):
        numbers = [p.get("port") for p in objects.items(subset, "ports") if (p.get("name") or "") == port_name]
        addresses = [a.get("ip") for a in objects.items(subset, "addresses") if a.get("ip")]
        if numbers and addresses:
            via = f"Service {namespace}/{name}:{port}"
            return Target(addresses[0], int(numbers[0]), f"{name}.{namespace}.svc", path, via)
    raise Unreachable(f"Service {namespace}/{name} has no ready endpoint: no pod behind it is ready")


def url_target(kube: Reader, url: str) -> Target:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path.rstrip("/")
    service = SERVICE_HOST.match(host)
    if service:
        return service_target(kube, service["namespace"], service["name"], port, path)
    return Target(host, port, host, path)


def verifying_context(ca_pem: str) -> ssl.SSLContext:
    """Trusts only `ca_pem`, and checks the server's name, as the apiserver and kube-scheduler do."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.check_hostname = True
    return context


def any_certificate() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    certificate: bytes  # the server's leaf certificate, DER


def https(
    target: Target,
    context: ssl.SSLContext,
    method: str = "GET",
    path: str = "/",
    body: bytes | None = None,
    timeout: float = 5.0,
) -> Answer:
    """One HTTPS request to the target's address, with SNI and name checks for its server name."""
    try:
        raw = socket.create_connection((target.address, target.port), timeout=timeout)
    except OSError as err:
        raise Unreachable(f"nothing answers at {target.describe()}: {_reason(err)}") from err
    try:
        tls = context.wrap_socket(raw, server_hostname=target.server_name)
    except ssl.SSLCertVerificationError as err:
        raw.close()
        raise Unreachable(f"TLS to {target.describe()}: {err.verify_message} (for name {target.server_name})") from err
    except (OSError, ssl.SSLError) as err:
        raw.close()
        raise Unreachable(f"TLS to {target.describe()}: {_reason(err)}") from err
    conn = http.client.HTTPConnection(target.server_name, target.port, timeout=timeout)
    conn.sock = tls
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, target.path + path, body=body, headers=headers)
        resp = conn.getresponse()
        return Answer(resp.status, resp.read(), tls.getpeercert(binary_form=True) or b"")
    except (OSError, http.client.HTTPException) as err:
        raise Unreachable(f"{method} {target.path + path} at {target.describe()}: {_reason(err)}") from err
    finally:
        conn.close()


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__
