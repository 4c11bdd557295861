"""`stork-webhook`: the admission webhooks under gunicorn, TLS only."""

from __future__ import annotations

import argparse
import datetime
import logging
from collections.abc import Sequence
from typing import Any

from flask import Flask

from storkcore import annotations as ann
from storkcore import cli
from storkcore.cluster import ClusterState
from storkcore.drivers import make_driver
from storkcore.kube import PVCS, PVS, STORAGE_CLASSES, Kube, load_api_client
from storkcore.locality import Locality, decide_locality
from storkcore.nodetable import NodeTable
from webhook.admission import AdmissionSettings
from webhook.app import create_app

log = logging.getLogger("stork.webhook")


def build_parser() -> cli.EnvDefaultsParser:
    parser = cli.EnvDefaultsParser(
        prog="stork-webhook",
        description="Admission webhooks: send pods with driver volumes to stork's scheduler, validate Rules.",
    )
    cli.add_cluster_arguments(parser)
    cli.add_serving_arguments(parser, default_bind="0.0.0.0:8443", tls_required=True)
    parser.add_argument("--scheduler-name", default="stork", help="scheduler that pods with driver volumes get")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="server processes (each keeps its own small caches; TLS and JSON are CPU work)",
    )
    parser.add_argument(
        "--skip-annotation",
        default=ann.DISABLE_ADMISSION_CONTROLLER,
        help="pod annotation that opts a pod out when true",
    )
    parser.add_argument(
        "--locality-constraint",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold pods that a controller owns to their Online replica nodes with a required node affinity, so "
        "that kube-scheduler's sampling above 100 nodes cannot miss them (the controller undoes it for a pod "
        "its replica nodes cannot take); watches nodes and the driver's state",
    )
    return parser


def build_app(args: argparse.Namespace) -> Flask:
    kube = Kube(load_api_client(args.kubeconfig, user_agent="stork-webhook"))
    cluster = ClusterState(kube)
    driver = make_driver(args.driver, cluster, cli.driver_options(args))
    settings = AdmissionSettings(scheduler_name=args.scheduler_name, skip_annotation=args.skip_annotation)
    essentials = [PVCS, PVS, STORAGE_CLASSES]  # whose claims and classes are whose
    locality_of = None
    if args.locality_constraint:
        # Replica locations come from the caches the extender uses, and for drivers over a
        # storage API from their background refresh: never a call while a pod waits.
        table = NodeTable(driver)
        cluster.start()
        driver.start()

        def locality_of(pod: Any, namespace: str) -> Locality:
            return decide_locality(driver, table, pod, namespace, datetime.datetime.now(datetime.UTC))

    else:
        cluster.start(only=essentials)
    log.info(
        "webhook started",
        extra={"driver": args.driver, "scheduler_name": args.scheduler_name, "locality": args.locality_constraint},
    )
    # Ready once admission's own caches are synced: locality state that is late (or a driver
    # kind that is missing) only leaves pods unconstrained.
    return create_app(driver, settings, lambda: cluster.synced_for(essentials), locality_of)


def main(argv: Sequence[str] | None = None) -> None:
    cli.run_server(build_parser(), argv, build_app, workers=lambda args: args.workers)


if __name__ == "__main__":
    main()
