"""Keeping the webhooks' certificates valid in the cluster (the leader does it).

Everything lives in the Secret the servers mount (`stork/stork-tls`): `tls.crt`/`tls.key`
(the serving pair), `ca.crt` (every CA clients should trust: one, or two during a
roll-over) and `ca.key` (the CA that signs). The webhook and the extender reload the mounted
files without restarting (`storkcore.serving.ReloadingTLS`), so renewing is writing the Secret.

Serving certificate: renewed at `renew_fraction` of its life (default two thirds), with the
same names and the same lifetime, never outliving its CA.

CA roll-over, in two steps so no client ever sees a certificate it does not trust yet:
1. At `renew_fraction` of the CA's life a new CA is made. It is added to `ca.crt` (its key
   waits in `ca-next.key`), published into every webhook configuration's `caBundle`, and
   the Deployments that read `ca.crt` only at start (kube-scheduler, for the extender) are
   restarted so their new pods trust both.
2. `trust_grace` seconds later (the apiservers have seen the bundle), the new CA signs a new
   serving certificate and becomes `ca.key`. The old CA stays in the bundle until it expires.

Without `ca.key` in the Secret (cert-manager's overlay: its CA issuer keeps the key) the
controller changes nothing and only reports the expiry dates.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509

from certs import authority as ca_tools
from certs.cli import write_ca_bundle
from storkcore.annotations import STORK_PREFIX
from storkcore.kube import DEPLOYMENTS, SECRETS, WEBHOOK_CONFIGS, Kube

log = logging.getLogger(__name__)

NEXT_CA_KEY = "ca-next.key"
PUBLISHED_AT = STORK_PREFIX + "ca-next-published-at"  # on the Secret: when the next CA was first trusted
BUNDLE_HASH = STORK_PREFIX + "ca-bundle"  # on restarted pod templates: the bundle their pods trust


@dataclass(frozen=True)
class CertificateSettings:
    secret_namespace: str = "stork"
    secret_name: str = "stork-tls"
    webhook_configs: tuple[str, ...] = ("stork-webhook",)
    restart_deployments: tuple[tuple[str, str], ...] = ()  # (namespace, name): read ca.crt once at start
    renew_fraction: float = 2 / 3
    check_interval: float = 60.0
    trust_grace: float = 120.0  # seconds between trusting a new CA and serving with it


class CertificateStore(Protocol):
    def read_secret(self) -> dict[str, Any] | None: ...

    def write_secret(self, secret: Mapping[str, Any]) -> dict[str, Any]: ...

    def publish_bundle(self, bundle_b64: str) -> list[str]:
        """Write the bundle into every webhook of the configurations; returns those changed."""
        ...

    def restart(self, namespace: str, name: str, bundle_hash: str) -> bool:
        """Roll the Deployment's pods unless their template already carries this bundle."""
        ...


class CertificateMetrics(Protocol):
    def certificate_expiry(self, which: str, timestamp: float) -> None: ...

    def certificate_renewed(self, which: str) -> None: ...

    def certificate_error(self) -> None: ...


class EventPoster(Protocol):
    def record(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None: ...


@dataclass
class Material:
    """The Secret's certificates and keys, parsed; `data` keeps every other key untouched."""

    data: dict[str, str]
    bundle: list[x509.Certificate]
    ca_key: Any | None
    next_key: Any | None
    serving: x509.Certificate | None
    published_at: dt.datetime | None
    changes: list[str] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)  # (reason, message) events to post
    renewed: list[str] = field(default_factory=list)  # "serving", "ca": counted once written

    def signer(self) -> x509.Certificate:
        return self._holder_of(self.ca_key, "ca.key")

    def next_ca(self) -> x509.Certificate | None:
        return self._holder_of(self.next_key, NEXT_CA_KEY) if self.next_key is not None else None

    def _holder_of(self, key: Any, name: str) -> x509.Certificate:
        for cert in self.bundle:
            if ca_tools.same_public_key(key, cert):
                return cert
        raise ValueError(f"{name} belongs to no certificate in ca.crt")


def _decode(data: Mapping[str, str], key: str) -> bytes:
    return base64.b64decode(data[key]) if data.get(key) else b""


def parse(secret: Mapping[str, Any]) -> Material:
    data = dict(secret.get("data") or {})
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    serving_pem = _decode(data, ca_tools.TLS_CERT)
    ca_key_pem, next_key_pem = _decode(data, ca_tools.CA_KEY), _decode(data, NEXT_CA_KEY)
    published = annotations.get(PUBLISHED_AT)
    return Material(
        data=data,
        bundle=ca_tools.certificates_in(_decode(data, ca_tools.CA_CERT)),
        ca_key=ca_tools.key_from_pem(ca_key_pem) if ca_key_pem else None,
        next_key=ca_tools.key_from_pem(next_key_pem) if next_key_pem else None,
        serving=ca_tools.certificates_in(serving_pem)[0] if serving_pem.strip() else None,
        published_at=dt.datetime.fromisoformat(published) if published else None,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bundle_hash(material: Material) -> str:
    return hashlib.sha256(ca_tools.bundle_pem(material.bundle)).hexdigest()[:16]


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class CertificateRenewer:
    def __init__(
        self,
        store: CertificateStore,
        settings: CertificateSettings,
        events: EventPoster,
        metrics: CertificateMetrics,
        is_leader: Callable[[], bool],
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        self.metrics = metrics
        self.is_leader = is_leader
        self.now = now
        self._next_check: dt.datetime | None = None
        self._said_missing = False

    def tick(self) -> None:
        now = self.now()
        if self._next_check is not None and now < self._next_check:
            return
        if not self.is_leader():
            return  # a replica that becomes the leader looks at once, not an interval later
        self._next_check = now + dt.timedelta(seconds=self.settings.check_interval)
        secret = None
        try:
            secret = self.store.read_secret()
            if secret is None:
                if not self._said_missing:
                    log.info("no TLS Secret to keep valid", extra={"secret": self.settings.secret_name})
                    self._said_missing = True
                return
            self.reconcile(secret, now)
        except Exception as err:
            self.metrics.certificate_error()
            log.exception("certificate renewal failed")
            if secret is not None:
                self.events.record(secret, "Warning", "CertificateRenewalFailed", str(err))

    def reconcile(self, secret: Mapping[str, Any], now: dt.datetime) -> None:
        material = parse(secret)
        self._report(material)
        if material.ca_key is None:
            return  # someone else (cert-manager) holds the CA: report only
        self._drop_expired_cas(material, now)
        self._start_ca_rollover(material, now)
        published = self.store.publish_bundle(_b64(ca_tools.bundle_pem(material.bundle)))
        if published:
            log.info("CA bundle published", extra={"configurations": published})
        if material.next_key is not None:
            self._finish_ca_rollover(material, now)
        self._renew_serving(material, now)
        if material.changes:
            written = self.store.write_secret(self._updated_secret(secret, material))
            self._report(material)
            for which in material.renewed:
                self.metrics.certificate_renewed(which)
            for reason, message in material.notices:
                self.events.record(written, "Normal", reason, message)
        if material.next_key is not None:
            # After the write: the restarted pods mount a ca.crt that already holds the new CA.
            self._restart_ca_readers(material)

    def _report(self, material: Material) -> None:
        if material.serving is not None:
            self.metrics.certificate_expiry("serving", material.serving.not_valid_after_utc.timestamp())
        if material.ca_key is not None:
            self.metrics.certificate_expiry("ca", material.signer().not_valid_after_utc.timestamp())
        elif material.bundle:
            self.metrics.certificate_expiry("ca", min(c.not_valid_after_utc for c in material.bundle).timestamp())

    def _drop_expired_cas(self, material: Material, now: dt.datetime) -> None:
        signer = material.signer()
        kept = [c for c in material.bundle if c is signer or c.not_valid_after_utc > now]
        if len(kept) != len(material.bundle):
            material.bundle = kept
            material.changes.append("expired CA removed from ca.crt")

    def _start_ca_rollover(self, material: Material, now: dt.datetime) -> None:
        signer = material.signer()
        if material.next_key is not None or now < ca_tools.renewal_due_at(signer, self.settings.renew_fraction):
            return
        days = ca_tools.validity(signer) / dt.timedelta(days=1)
        new_ca = ca_tools.create_ca(days=days, now=now)
        material.bundle = [*material.bundle, new_ca.cert]
        material.next_key = new_ca.key
        material.published_at = now
        material.changes.append("new CA trusted")
        self._event(material, "CertificateAuthorityTrusted", f"new CA trusted, signs from {_when(now)} on")

    def _restart_ca_readers(self, material: Material) -> None:
        digest = bundle_hash(material)
        for namespace, name in self.settings.restart_deployments:
            if self.store.restart(namespace, name, digest):
                log.info("restarted to trust the new CA", extra={"deployment": f"{namespace}/{name}"})

    def _finish_ca_rollover(self, material: Material, now: dt.datetime) -> None:
        assert material.published_at is not None
        if (now - material.published_at).total_seconds() < self.settings.trust_grace:
            return
        new_ca = material.next_ca()
        assert new_ca is not None
        material.ca_key, material.next_key, material.published_at = material.next_key, None, None
        material.changes.append("new CA signs")
        material.renewed.append("ca")
        self._event(
            material, "CertificateAuthorityRolledOver", f"new CA signs, valid until {_when(new_ca.not_valid_after_utc)}"
        )

    def _renew_serving(self, material: Material, now: dt.datetime) -> None:
        signer, serving = material.signer(), material.serving
        if serving is None:
            raise ValueError(f"{ca_tools.TLS_CERT} is missing: the names to renew it for are unknown")
        due = now >= ca_tools.renewal_due_at(serving, self.settings.renew_fraction)
        if not due and ca_tools.signed_by(serving, signer):
            return
        if signer.not_valid_after_utc <= now:
            # Nothing valid can come from an expired CA (the controller was down past its end):
            # the roll-over started above lets the new CA sign once it is trusted.
            log.warning("the CA has expired; a new CA signs after the trust grace period")
            return
        # Same lifetime as before, but never beyond the CA that signs it.
        until = min(now + ca_tools.validity(serving), signer.not_valid_after_utc)
        days = (until - now) / dt.timedelta(days=1)
        assert material.ca_key is not None
        renewed = ca_tools.create_serving(
            ca_tools.KeyPair(material.ca_key, signer),
            ca_tools.dns_names_of(serving),
            ca_tools.ips_of(serving),
            days=days,
            now=now,
        )
        material.serving = renewed.cert
        material.data[ca_tools.TLS_KEY] = _b64(renewed.key_pem())
        material.changes.append("serving certificate renewed")
        material.renewed.append("serving")
        self._event(
            material, "CertificateRenewed", f"serving certificate renewed, valid until {_when(renewed.expires())}"
        )

    def _event(self, material: Material, reason: str, message: str) -> None:
        material.notices.append((reason, message))

    def _updated_secret(self, secret: Mapping[str, Any], material: Material) -> dict[str, Any]:
        data = dict(material.data)
        data[ca_tools.CA_CERT] = _b64(ca_tools.bundle_pem(material.bundle))
        assert material.ca_key is not None and material.serving is not None
        data[ca_tools.CA_KEY] = _b64(ca_tools.private_key_pem(material.ca_key))
        data[ca_tools.TLS_CERT] = _b64(ca_tools.bundle_pem([material.serving]))
        annotations = dict((secret.get("metadata") or {}).get("annotations") or {})
        if material.next_key is not None:
            data[NEXT_CA_KEY] = _b64(ca_tools.private_key_pem(material.next_key))
            assert material.published_at is not None
            annotations[PUBLISHED_AT] = material.published_at.isoformat()
        else:
            data.pop(NEXT_CA_KEY, None)
            annotations.pop(PUBLISHED_AT, None)
        metadata = {**secret["metadata"], "annotations": annotations}
        return {**secret, "metadata": metadata, "data": data}


class KubeCertificateStore:
    """The Secret, the webhook configurations and the Deployments, through the apiserver."""

    def __init__(self, kube: Kube, settings: CertificateSettings) -> None:
        self.kube = kube
        self.settings = settings

    def read_secret(self) -> dict[str, Any] | None:
        return self.kube.get(SECRETS, self.settings.secret_namespace, self.settings.secret_name)

    def write_secret(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        # A PUT carrying the resourceVersion we read: a concurrent writer makes it fail (409).
        path = SECRETS.object_path(self.settings.secret_namespace, self.settings.secret_name)
        return self.kube.request("PUT", path, body=secret)

    def publish_bundle(self, bundle_b64: str) -> list[str]:
        return [
            f"{kind}/{name}"
            for name in self.settings.webhook_configs
            for kind in WEBHOOK_CONFIGS
            if write_ca_bundle(self.kube, kind, name, bundle_b64)
        ]

    def restart(self, namespace: str, name: str, bundle_hash: str) -> bool:
        deployment = self.kube.get(DEPLOYMENTS, namespace, name)
        if deployment is None:
            return False
        template = (deployment.get("spec") or {}).get("template") or {}
        if ((template.get("metadata") or {}).get("annotations") or {}).get(BUNDLE_HASH) == bundle_hash:
            return False
        patch = {"spec": {"template": {"metadata": {"annotations": {BUNDLE_HASH: bundle_hash}}}}}
        self.kube.patch(DEPLOYMENTS, namespace, name, patch)
        return True
