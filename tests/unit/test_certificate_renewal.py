"""The controller keeps the webhooks' certificates valid: serving renewal and CA roll-over.

The invariant a user cares about is checked at every step of a simulated clock: the
certificate the servers would load from the Secret verifies against the bundle the
webhook configurations hold, so the apiserver never rejects our webhook's TLS.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
from typing import Any

import pytest
from cryptography import x509

from certs import authority as ca_tools
from certs.cli import secret_body
from controller.certificates import NEXT_CA_KEY, CertificateRenewer, CertificateSettings

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


class FakeStore:
    """The Secret, two webhook configurations' caBundle and Deployments, in memory."""

    def __init__(self, secret: dict[str, Any] | None) -> None:
        self.secret = secret
        self.config_bundle = ""
        self.restarted: list[tuple[str, str, str]] = []
        self.writes = 0
        self.fail_writes = False

    def read_secret(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.secret)

    def write_secret(self, secret):
        if self.fail_writes:
            raise RuntimeError("apiserver said 409 Conflict")
        self.writes += 1
        self.secret = copy.deepcopy(secret)
        return copy.deepcopy(secret)

    def publish_bundle(self, bundle_b64: str) -> list[str]:
        if bundle_b64 == self.config_bundle:
            return []
        self.config_bundle = bundle_b64
        return ["mutating/stork-webhook", "validating/stork-webhook"]

    def restart(self, namespace: str, name: str, bundle_hash: str) -> bool:
        if (namespace, name, bundle_hash) in self.restarted:
            return False
        self.restarted.append((namespace, name, bundle_hash))
        return True

    def file(self, key: str) -> bytes:
        return base64.b64decode(self.secret["data"][key])

    def serving(self) -> x509.Certificate:
        return ca_tools.certificates_in(self.file(ca_tools.TLS_CERT))[0]

    def published_cas(self) -> list[x509.Certificate]:
        return ca_tools.certificates_in(base64.b64decode(self.config_bundle))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.expiry: dict[str, float] = {}
        self.renewed: list[str] = []
        self.errors = 0

    def record(self, obj, event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))

    def certificate_expiry(self, which: str, timestamp: float) -> None:
        self.expiry[which] = timestamp

    def certificate_renewed(self, which: str) -> None:
        self.renewed.append(which)

    def certificate_error(self) -> None:
        self.errors += 1

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def make_secret(tmp_path, ca_minutes: float, serving_minutes: float, with_ca_key: bool = True) -> dict[str, Any]:
    ca = ca_tools.create_ca(days=ca_minutes / 1440, now=START)
    names = [*ca_tools.service_names("stork-webhook", "stork"), "stork-extender.stork.svc"]
    serving = ca_tools.create_serving(ca, names, ["127.0.0.1"], days=serving_minutes / 1440, now=START)
    ca_tools.save(tmp_path, ca, serving)
    if not with_ca_key:
        (tmp_path / ca_tools.CA_KEY).unlink()
    body = secret_body("stork-tls", "stork", tmp_path)
    body["metadata"]["resourceVersion"] = "1"
    return body


class World:
    def __init__(self, tmp_path, ca_minutes=600.0, serving_minutes=60.0, grace_seconds=120.0, **kw) -> None:
        self.clock = START
        self.store = FakeStore(make_secret(tmp_path, ca_minutes, serving_minutes, **kw))
        self.seen = Recorder()
        self.leader = True
        settings = CertificateSettings(
            restart_deployments=(("stork", "stork-scheduler"),), check_interval=30.0, trust_grace=grace_seconds
        )
        self.renewer = CertificateRenewer(
            self.store, settings, self.seen, self.seen, lambda: self.leader, now=lambda: self.clock
        )

    def run_until(self, minutes: float) -> None:
        """Tick every 30 s of simulated time, checking the invariant after every tick."""
        end = START + minutes * MINUTE
        while self.clock < end:
            self.renewer.tick()
            self.assert_servers_trusted()
            self.clock += dt.timedelta(seconds=30)

    def assert_servers_trusted(self) -> None:
        if not self.store.config_bundle:
            return  # nothing published yet: the first tick publishes
        serving = self.store.serving()
        assert any(ca_tools.signed_by(serving, ca) for ca in self.store.published_cas()), self.clock
        assert serving.not_valid_after_utc > self.clock, f"served an expired certificate at {self.clock}"


def test_serving_certificate_is_left_alone_before_two_thirds_of_its_life(tmp_path):
    world = World(tmp_path, serving_minutes=60)
    first = world.store.serving()
    world.run_until(38)  # 60 min, backdated by 5: due at 2/3 of 65 = 38.3 min after issue
    assert world.store.serving() == first
    assert world.store.writes == 0
    assert world.seen.expiry["serving"] == first.not_valid_after_utc.timestamp()


def test_serving_certificate_is_renewed_at_two_thirds_with_the_same_names_and_lifetime(tmp_path):
    world = World(tmp_path, serving_minutes=60)
    first = world.store.serving()
    world.run_until(39)
    renewed = world.store.serving()
    assert renewed != first
    assert ca_tools.dns_names_of(renewed) == ca_tools.dns_names_of(first)
    assert ca_tools.ips_of(renewed) == ["127.0.0.1"]
    assert ca_tools.lifetime(renewed) == ca_tools.lifetime(first)
    # The key was replaced with the certificate, in the same write.
    key = ca_tools.key_from_pem(world.store.file(ca_tools.TLS_KEY))
    assert ca_tools.same_public_key(key, renewed)
    assert world.seen.renewed == ["serving"]
    assert world.seen.reasons() == ["CertificateRenewed"]
    assert world.seen.expiry["serving"] == renewed.not_valid_after_utc.timestamp()
    world.run_until(180)  # and again, every 40 minutes
    assert world.seen.renewed.count("serving") == 4


def test_a_renewed_certificate_never_outlives_its_ca(tmp_path):
    world = World(tmp_path, ca_minutes=100, serving_minutes=90)
    world.run_until(64)  # renewed at 58.3 min; the CA's roll-over (at 65 min) not yet
    assert world.seen.renewed == ["serving"]
    (ca,) = world.store.published_cas()
    assert world.store.serving().not_valid_after_utc == ca.not_valid_after_utc


def test_ca_rollover_trusts_the_new_ca_first_then_signs_with_it_then_drops_the_old(tmp_path):
    world = World(tmp_path, ca_minutes=90, serving_minutes=600, grace_seconds=120)
    (old_ca,) = ca_tools.certificates_in(world.store.file(ca_tools.CA_CERT))
    world.run_until(60)  # two thirds of the CA's 95 minutes (90, backdated 5): 58.3 min after issue
    trusted = world.store.published_cas()
    assert len(trusted) == 2 and trusted[0] == old_ca
    new_ca = trusted[1]
    assert NEXT_CA_KEY in world.store.secret["data"]
    assert ca_tools.signed_by(world.store.serving(), old_ca)  # not yet signing: grace
    assert world.store.restarted and world.store.restarted[0][:2] == ("stork", "stork-scheduler")
    assert "CertificateAuthorityTrusted" in world.seen.reasons()

    world.run_until(61)  # the grace of 2 minutes passed
    assert ca_tools.signed_by(world.store.serving(), new_ca)
    ca_key = ca_tools.key_from_pem(world.store.file(ca_tools.CA_KEY))
    assert ca_tools.same_public_key(ca_key, new_ca)
    assert NEXT_CA_KEY not in world.store.secret["data"]
    assert world.store.published_cas() == [old_ca, new_ca]  # old still trusted: pods may serve its cert
    assert "CertificateAuthorityRolledOver" in world.seen.reasons()
    assert "ca" in world.seen.renewed

    world.run_until(91)  # the old CA expired
    assert world.store.published_cas() == [new_ca]
    assert len(world.store.restarted) == 1  # restarted once per roll-over


def test_many_renewals_and_ca_rollovers_never_leave_a_server_untrusted_or_expired(tmp_path):
    # Short lives, so a long run covers several CA roll-overs and many renewals.
    world = World(tmp_path, ca_minutes=60, serving_minutes=15, grace_seconds=90)
    world.run_until(400)
    assert world.seen.renewed.count("ca") >= 5
    assert world.seen.errors == 0


def test_with_cert_manager_in_charge_nothing_is_written_and_expiry_is_reported(tmp_path):
    world = World(tmp_path, serving_minutes=60, with_ca_key=False)
    world.run_until(120)  # long past renewal time
    assert world.store.writes == 0
    assert world.store.config_bundle == ""  # cert-manager's CA injector owns the caBundle
    assert world.seen.expiry["serving"] == world.store.serving().not_valid_after_utc.timestamp()
    assert "ca" in world.seen.expiry


def test_a_replica_that_does_not_lead_never_reads_or_writes(tmp_path):
    world = World(tmp_path, serving_minutes=60)
    world.leader = False
    world.run_until(50)
    assert world.store.writes == 0 and world.seen.expiry == {}


def test_a_replica_that_becomes_the_leader_looks_at_once_not_an_interval_later(tmp_path):
    world = World(tmp_path, serving_minutes=60)
    world.leader = False
    world.renewer.tick()  # at start: not leading yet
    world.leader = True
    world.clock += dt.timedelta(seconds=1)
    world.renewer.tick()
    assert "serving" in world.seen.expiry  # reported within a second of leading (it was a whole interval)


def test_a_failed_write_is_counted_and_told_in_an_event_and_retried(tmp_path):
    world = World(tmp_path, serving_minutes=60)
    world.store.fail_writes = True
    world.run_until(41)
    assert world.seen.errors >= 1
    assert ("Warning", "CertificateRenewalFailed", "apiserver said 409 Conflict") in world.seen.events
    world.store.fail_writes = False
    world.clock += MINUTE
    world.renewer.tick()
    assert world.seen.renewed == ["serving"]


def test_a_secret_whose_ca_key_matches_no_ca_is_an_error_not_a_crash(tmp_path):
    world = World(tmp_path)
    other = ca_tools.create_ca(days=1, now=START)
    world.store.secret["data"][ca_tools.CA_KEY] = base64.b64encode(other.key_pem()).decode()
    world.renewer.tick()
    assert world.seen.errors == 1
    assert world.seen.events[0][1] == "CertificateRenewalFailed"
    assert "ca.key belongs to no certificate in ca.crt" in world.seen.events[0][2]


@pytest.mark.parametrize("minutes", [10, 0.5])
def test_short_certificates_are_not_backdated_for_most_of_their_life(minutes):
    cert = ca_tools.create_ca(days=minutes / 1440, now=START).cert
    assert cert.not_valid_after_utc - START == dt.timedelta(minutes=minutes)
    assert START - cert.not_valid_before_utc <= dt.timedelta(minutes=minutes) / 10


def test_a_controller_back_after_the_ca_expired_recovers_with_a_new_ca(tmp_path):
    world = World(tmp_path, ca_minutes=60, serving_minutes=30, grace_seconds=120)
    world.clock = START + 90 * MINUTE  # nobody renewed anything for an hour and a half
    world.renewer.tick()
    assert world.seen.errors == 0
    assert len(ca_tools.certificates_in(world.store.file(ca_tools.CA_CERT))) == 2  # new CA trusted
    world.clock += 3 * MINUTE
    world.renewer.tick()  # the grace passed: the new CA signs
    world.clock += MINUTE
    world.renewer.tick()
    serving = world.store.serving()
    (new_ca,) = world.store.published_cas()  # and the expired one left the bundle
    assert ca_tools.signed_by(serving, new_ca)
    assert serving.not_valid_after_utc > world.clock


def test_ca_readers_are_restarted_only_after_the_secret_holds_the_new_ca(tmp_path):
    world = World(tmp_path, ca_minutes=90, serving_minutes=600)
    order: list[str] = []
    write, restart = world.store.write_secret, world.store.restart
    world.store.write_secret = lambda secret: order.append("write") or write(secret)
    world.store.restart = lambda *a: order.append("restart") or restart(*a)
    world.run_until(60)
    assert order[:2] == ["write", "restart"]
