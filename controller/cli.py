"""`stork-controller`: the leader-elected storage health monitor and group snapshot controller."""

from __future__ import annotations

import argparse
import datetime
import logging
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Gauge
from werkzeug.serving import make_server

from controller.certificates import CertificateRenewer, CertificateSettings, KubeCertificateStore
from controller.execs import KubePodExec
from controller.features import Feature, Features, served_probe
from controller.groupsnapshots import GroupSnapshotController, GroupSnapshotSettings
from controller.health import MIN_INTERVAL, SKIP_REASONS, HealthMonitor, MonitorSettings
from controller.kubesnapshots import KubeScheduleCluster, KubeSnapshotCluster
from controller.leader import AlwaysLeader, KubeLeases, LeaderElector, LeaseSettings
from controller.locality import FallbackSettings, LocalityFallback
from controller.rules import RuleRunner, RuleSettings
from controller.schedules import ScheduleController, ScheduleSettings
from storkcore import annotations as ann
from storkcore import cli, objects
from storkcore.cluster import ClusterState
from storkcore.drivers import make_driver
from storkcore.drivers.base import Driver
from storkcore.events import EventRecorder
from storkcore.kube import NODES, PODS, PVCS, ApiError, Kube, Resource, load_api_client
from storkcore.logs import setup_logging
from storkcore.snapshots import (
    FAILED,
    GROUP_SNAPSHOTS,
    RULES,
    SCHEDULE_POLICIES,
    SNAPSHOT_SCHEDULES,
    SUCCESSFUL,
    VOLUME_SNAPSHOT_CLASSES,
    VOLUME_SNAPSHOTS,
)
from storkcore.web import add_health_routes, register_driver_metrics

log = logging.getLogger("stork.controller")


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._rescheduled = Counter(
            "stork_pods_rescheduled", "Pods deleted by the health monitor so they restart elsewhere.", registry=registry
        )
        self._skipped = Counter(
            "stork_health_monitor_skipped", "Times the monitor held back, by safeguard.", ["reason"], registry=registry
        )
        self._offline = Gauge(
            "stork_health_monitor_offline_nodes", "Driver nodes offline at the last scan.", registry=registry
        )
        self.leader = Gauge("stork_controller_leader", "1 while this replica holds the lease.", registry=registry)
        self._group_snapshots = Counter(
            "stork_group_snapshots", "GroupVolumeSnapshots finished, by final status.", ["status"], registry=registry
        )
        self._cert_expiry = Gauge(
            "stork_certificate_expiry_timestamp_seconds",
            "When the certificate in the TLS Secret expires (serving, or the CA that signs).",
            ["certificate"],
            registry=registry,
        )
        self._cert_renewals = Counter(
            "stork_certificate_renewals", "Certificates renewed by the controller.", ["certificate"], registry=registry
        )
        self.locality_fallbacks = Counter(
            "stork_locality_fallbacks",
            "Pods held to their replica nodes that none of them could take, released to any node.",
            registry=registry,
        )
        self._cert_errors = Counter(
            "stork_certificate_renewal_errors", "Failed attempts to keep the certificates valid.", registry=registry
        )

        # Known label values start at 0, so a healthy install's panels show 0, not "no data".
        for reason in SKIP_REASONS:
            self._skipped.labels(reason)
        for status in (SUCCESSFUL, FAILED):
            self._group_snapshots.labels(status)
        for which in ("serving", "ca"):
            self._cert_renewals.labels(which)

    def certificate_expiry(self, which: str, timestamp: float) -> None:
        self._cert_expiry.labels(which).set(timestamp)

    def certificate_renewed(self, which: str) -> None:
        self._cert_renewals.labels(which).inc()

    def certificate_error(self) -> None:
        self._cert_errors.inc()

    def group_snapshot_finished(self, status: str) -> None:
        self._group_snapshots.labels(status).inc()

    def rescheduled(self) -> None:
        self._rescheduled.inc()

    def skipped(self, reason: str) -> None:
        self._skipped.labels(reason).inc()

    def offline_nodes(self, count: int) -> None:
        self._offline.set(count)


class KubePodActions:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def delete(self, pod: Mapping[str, Any], grace_seconds: int | None) -> None:
        # The uid precondition: never delete a new pod that took the same name (StatefulSets).
        body: dict[str, Any] = {"preconditions": {"uid": objects.text(pod, "metadata", "uid")}}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            self.kube.delete(PODS, objects.namespace(pod), objects.name(pod), body)
        except ApiError as err:
            if err.status not in (404, 409):  # gone already, or another pod by now
                raise


class KubeFallbackCluster:
    """What the locality fallback reads (the pod cache) and does (a claim annotation, a deletion)."""

    def __init__(self, kube: Kube, cluster: ClusterState) -> None:
        self.kube = kube
        self.pods = cluster.store(PODS)
        self.actions = KubePodActions(kube)

    def pending_pods(self) -> list[Mapping[str, Any]]:
        return [p for p in self.pods.list() if not objects.text(p, "spec", "nodeName")]

    def mark_claim(self, namespace: str, claim: str, until: str) -> Mapping[str, Any] | None:
        body = {"metadata": {"annotations": {ann.LOCALITY_FALLBACK_UNTIL: until}}}
        try:
            return self.kube.patch(PVCS, namespace, claim, body)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def delete_pod(self, pod: Mapping[str, Any]) -> None:
        self.actions.delete(pod, None)


def build_parser() -> cli.EnvDefaultsParser:
    parser = cli.EnvDefaultsParser(
        prog="stork-controller",
        description="Storage health monitor (moves pods off nodes whose storage died) and "
        "application-consistent group snapshots.",
    )
    cli.add_cluster_arguments(parser)
    parser.add_argument("--bind", default="0.0.0.0:8098", help="HOST:PORT for /livez, /readyz and /metrics")
    parser.add_argument("--health-monitor-interval", type=float, default=120.0, help="seconds between scans (min 30)")
    parser.add_argument(
        "--max-offline-fraction", type=float, default=0.5, help="do nothing when more of the driver's nodes are offline"
    )
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True, help="use a Lease")
    parser.add_argument("--lease-namespace", default="stork", help="namespace of the Lease")
    parser.add_argument("--lease-name", default="stork-controller", help="name of the Lease")
    parser.add_argument("--offline-backoff", type=float, default=150.0, help="seconds of re-checks before acting")
    parser.add_argument("--batch-size", type=int, default=5, help="pods deleted per batch")
    parser.add_argument("--batch-interval", type=float, default=30.0, help="seconds between batches")
    parser.add_argument("--act-on-degraded", action="store_true", help="treat Degraded driver nodes as offline too")
    parser.add_argument(
        "--unsafe-short-intervals",
        action="store_true",
        help="allow an interval under 30 s (tests and demos only)",
    )
    locality = parser.add_argument_group("locality at scale")
    locality.add_argument(
        "--locality-fallback-after",
        type=float,
        default=5.0,
        help="seconds a pod held to its replica nodes may stay unschedulable before it is recreated without that "
        "constraint",
    )
    locality.add_argument(
        "--locality-fallback-window",
        type=float,
        default=600.0,
        help="seconds the claims of such a pod have their next pods admitted without the constraint",
    )
    snapshots = parser.add_argument_group("group snapshots")
    snapshots.add_argument(
        "--group-snapshots",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run GroupVolumeSnapshots and snapshot schedules",
    )
    snapshots.add_argument(
        "--schedule-timezone", default="UTC", help="timezone of the times in SchedulePolicies (an IANA name)"
    )
    snapshots.add_argument(
        "--unsafe-interval-minute-seconds",
        type=float,
        default=60.0,
        help="seconds an interval policy's minute lasts (tests and demos only)",
    )
    snapshots.add_argument("--rule-action-timeout", type=float, default=60.0, help="seconds for each rule action")
    snapshots.add_argument(
        "--rule-hold-timeout", type=float, default=300.0, help="seconds a background action holds at most"
    )
    snapshots.add_argument(
        "--snapshot-prechecks-timeout", type=float, default=300.0, help="seconds to wait for PVCs, rules, a class"
    )
    snapshots.add_argument(
        "--snapshot-cut-timeout", type=float, default=120.0, help="seconds for every snapshot to be cut"
    )
    snapshots.add_argument(
        "--snapshot-ready-timeout", type=float, default=1800.0, help="seconds for every snapshot to be ready"
    )
    certificates = parser.add_argument_group("certificates")
    certificates.add_argument(
        "--renew-certificates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the TLS Secret's certificates valid (only reports when the Secret has no ca.key)",
    )
    certificates.add_argument("--tls-secret", default="stork/stork-tls", help="NAMESPACE/NAME of the TLS Secret")
    certificates.add_argument(
        "--webhook-configuration",
        action="append",
        default=None,
        help="webhook configuration whose caBundle follows the Secret's ca.crt (repeatable; default stork-webhook)",
    )
    certificates.add_argument(
        "--restart-on-ca-change",
        action="append",
        default=None,
        help="NAMESPACE/NAME of a Deployment that reads ca.crt only at start, restarted when a new CA is "
        "trusted (repeatable; default stork/stork-scheduler)",
    )
    certificates.add_argument(
        "--certificate-check-interval", type=float, default=60.0, help="seconds between looks at the Secret"
    )
    certificates.add_argument(
        "--renew-fraction", type=float, default=2 / 3, help="renew when this fraction of a certificate's life passed"
    )
    certificates.add_argument(
        "--ca-trust-grace",
        type=float,
        default=120.0,
        help="seconds a new CA is trusted before it signs the serving certificate",
    )
    return parser


def certificate_settings_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CertificateSettings:
    def namespaced(value: str, flag: str) -> tuple[str, str]:
        namespace, _, name = value.partition("/")
        if not namespace or not name:
            parser.error(f"{flag}: expected NAMESPACE/NAME, got {value!r}")
        return namespace, name

    if not 0 < args.renew_fraction < 1:
        parser.error("--renew-fraction must be in (0, 1)")
    if args.certificate_check_interval <= 0 or args.ca_trust_grace < 0:
        parser.error("--certificate-check-interval must be positive and --ca-trust-grace not negative")
    namespace, name = namespaced(args.tls_secret, "--tls-secret")
    restarts = args.restart_on_ca_change if args.restart_on_ca_change is not None else ["stork/stork-scheduler"]
    return CertificateSettings(
        secret_namespace=namespace,
        secret_name=name,
        webhook_configs=tuple(args.webhook_configuration or ["stork-webhook"]),
        restart_deployments=tuple(namespaced(r, "--restart-on-ca-change") for r in restarts if r),
        renew_fraction=args.renew_fraction,
        check_interval=args.certificate_check_interval,
        trust_grace=args.ca_trust_grace,
    )


def snapshot_settings_from(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[RuleSettings, GroupSnapshotSettings]:
    try:
        ZoneInfo(args.schedule_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        parser.error(f"--schedule-timezone: unknown timezone {args.schedule_timezone!r}")
    if args.snapshot_cut_timeout >= args.rule_hold_timeout:
        parser.error("--snapshot-cut-timeout must be shorter than --rule-hold-timeout (the lock must outlast the cut)")
    for flag in ("rule_action_timeout", "rule_hold_timeout", "snapshot_prechecks_timeout", "snapshot_ready_timeout"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    return (
        RuleSettings(action_timeout=args.rule_action_timeout, hold_timeout=args.rule_hold_timeout),
        GroupSnapshotSettings(
            prechecks_timeout=args.snapshot_prechecks_timeout,
            cut_timeout=args.snapshot_cut_timeout,
            ready_timeout=args.snapshot_ready_timeout,
        ),
    )


def settings_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> MonitorSettings:
    if args.health_monitor_interval < MIN_INTERVAL and not args.unsafe_short_intervals:
        parser.error(f"--health-monitor-interval must be at least {MIN_INTERVAL:.0f} seconds")
    if not 0 < args.max_offline_fraction <= 1:
        parser.error("--max-offline-fraction must be in (0, 1]")
    return MonitorSettings.scaled(
        interval=args.health_monitor_interval,
        backoff_total=args.offline_backoff,
        batch_interval=args.batch_interval,
        batch_size=args.batch_size,
        max_offline_fraction=args.max_offline_fraction,
        act_on_degraded=args.act_on_degraded,
    )


def serve_health(bind: str, ready, registry: CollectorRegistry, detail) -> None:
    app = Flask("stork-controller")
    add_health_routes(app, ready, registry, detail)
    host, port = bind.rsplit(":", 1)
    server = make_server(host, int(port), app, threaded=True)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()


@dataclass
class Wiring:
    """What every feature is built from."""

    args: argparse.Namespace
    kube: Kube
    cluster: ClusterState
    driver: Driver
    events: EventRecorder
    elector: LeaderElector | AlwaysLeader
    metrics: ControllerMetrics


def placement_features(w: Wiring, settings: MonitorSettings, health_kinds: tuple[Resource, ...]) -> list[Feature]:
    """The health monitor (needs the driver's kinds and its first answer) and the locality
    fallback (pods, claims, nodes)."""
    fallback = FallbackSettings(after=w.args.locality_fallback_after, window=w.args.locality_fallback_window)
    return [
        Feature(
            "health-monitor",
            lambda: HealthMonitor(
                w.driver, KubePodActions(w.kube), w.events, settings, time.monotonic, w.elector.is_leader, w.metrics
            ),
            cached=health_kinds,
            precondition=lambda: "" if w.driver.ready() else "the storage system's first answer",
        ),
        Feature(
            "locality-fallback",
            lambda: LocalityFallback(
                KubeFallbackCluster(w.kube, w.cluster),
                w.events,
                fallback,
                lambda: datetime.datetime.now(datetime.UTC),
                w.elector.is_leader,
                on_release=w.metrics.locality_fallbacks.inc,
            ),
            cached=(PODS, PVCS, NODES),
        ),
    ]


def snapshot_features(w: Wiring, rules: RuleSettings, snapshots: GroupSnapshotSettings) -> list[Feature]:
    """Group snapshots (with their rules) and schedules: each waits for its own kinds."""

    def group_snapshots() -> GroupSnapshotController:
        snapshot_cluster = KubeSnapshotCluster(w.kube, w.cluster, w.events)
        # pods/exec needs a client of its own (see controller.execs)
        executor = KubePodExec(load_api_client(w.args.kubeconfig, user_agent="stork-controller"))
        return GroupSnapshotController(
            snapshot_cluster,
            RuleRunner(executor, snapshot_cluster, rules),
            snapshots,
            w.elector.is_leader,
            on_finish=w.metrics.group_snapshot_finished,
        )

    schedule_settings = ScheduleSettings(w.args.schedule_timezone, w.args.unsafe_interval_minute_seconds)
    return [
        Feature(
            "group-snapshots",
            group_snapshots,
            cached=(GROUP_SNAPSHOTS, PVCS, PODS),
            served=(RULES, VOLUME_SNAPSHOTS, VOLUME_SNAPSHOT_CLASSES),
        ),
        Feature(
            "schedules",
            lambda: ScheduleController(
                KubeScheduleCluster(w.kube, w.cluster, w.events), schedule_settings, is_leader=w.elector.is_leader
            ),
            cached=(SNAPSHOT_SCHEDULES, SCHEDULE_POLICIES, GROUP_SNAPSHOTS),
        ),
    ]


def certificate_feature(w: Wiring, settings: CertificateSettings) -> Feature:
    return Feature(
        "certificate-renewal",
        lambda: CertificateRenewer(
            KubeCertificateStore(w.kube, settings), settings, w.events, w.metrics, w.elector.is_leader
        ),
    )


def make_elector(args: argparse.Namespace, kube: Kube, metrics: ControllerMetrics) -> LeaderElector | AlwaysLeader:
    if not args.leader_elect:
        metrics.leader.set(1)
        return AlwaysLeader()
    return LeaderElector(
        KubeLeases(kube),
        LeaseSettings(name=args.lease_name, namespace=args.lease_namespace),
        on_change=lambda leading: metrics.leader.set(1 if leading else 0),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from(parser, args)
    rule_settings, snapshot_settings = snapshot_settings_from(parser, args)
    certificate_settings = certificate_settings_from(parser, args)
    setup_logging(args.log_level)
    kube = Kube(load_api_client(args.kubeconfig, user_agent="stork-controller"))
    cluster = ClusterState(kube)
    try:
        driver = make_driver(args.driver, cluster, cli.driver_options(args))
    except ValueError as err:
        parser.error(str(err))
    cluster.store(PODS)
    health_kinds = tuple(cluster.kinds())  # the driver's, the nodes', claims', volumes', pods'
    if args.group_snapshots:  # needs stork's snapshot CRDs; waits for them if they are missing
        for resource in (GROUP_SNAPSHOTS, SNAPSHOT_SCHEDULES, SCHEDULE_POLICIES):
            cluster.store(resource)
    cluster.start()
    driver.start()
    registry = CollectorRegistry()
    register_driver_metrics(registry, driver)
    metrics = ControllerMetrics(registry)
    elector = make_elector(args, kube, metrics)
    w = Wiring(args, kube, cluster, driver, EventRecorder(kube, "stork-controller"), elector, metrics)
    features = Features(cluster, served_probe(kube), registry)
    for feature in placement_features(w, settings, health_kinds):
        features.add(feature)
    if args.group_snapshots:
        for feature in snapshot_features(w, rule_settings, snapshot_settings):
            features.add(feature)
    if args.renew_certificates:
        features.add(certificate_feature(w, certificate_settings))
    serve_health(args.bind, features.ready, registry, lambda: {"features": features.states()})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("controller started", extra={"driver": args.driver, "interval": settings.interval})
    elector.start()
    while not stop.is_set():
        wait = features.tick()
        stop.wait(0.05 if wait is not None and wait <= 0 else 1.0)  # wake often to notice leadership changes
    groups = next((f.part for f in features.features if f.name == "group-snapshots"), None)
    if isinstance(groups, GroupSnapshotController):
        groups.rules.release_all()  # a stopping controller does not leave an application held
    elector.stop()
    cluster.stop()
    log.info("controller stopped")


if __name__ == "__main__":
    main()
