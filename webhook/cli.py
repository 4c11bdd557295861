"""`stork-webhook`: the admission webhooks under gunicorn, TLS only."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from flask import Flask

from storkcore import annotations as ann
from storkcore import cli
from storkcore.cluster import ClusterState
from storkcore.drivers import make_driver
from storkcore.kube import PVCS, PVS, STORAGE_CLASSES, Kube, load_api_client
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
    return parser


def build_app(args: argparse.Namespace) -> Flask:
    kube = Kube(load_api_client(args.kubeconfig, user_agent="stork-webhook"))
    cluster = ClusterState(kube)
    driver = make_driver(args.driver, cluster, cli.driver_options(args))
    # Admission only needs to know whose claims and classes are whose.
    cluster.start(only=[PVCS, PVS, STORAGE_CLASSES])
    settings = AdmissionSettings(scheduler_name=args.scheduler_name, skip_annotation=args.skip_annotation)
    log.info("webhook started", extra={"driver": args.driver, "scheduler_name": args.scheduler_name})
    return create_app(driver, settings)


def main(argv: Sequence[str] | None = None) -> None:
    cli.run_server(build_parser(), argv, build_app, workers=lambda args: args.workers)


if __name__ == "__main__":
    main()
