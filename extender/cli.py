"""`stork-extender`: the scheduler extender, under granian (or gunicorn)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flask import Flask

from extender.app import SCORE_MODES, create_app
from storkcore import cli
from storkcore.cluster import ClusterState
from storkcore.drivers import make_driver
from storkcore.events import EventRecorder
from storkcore.kube import PODS, Kube, load_api_client

log = logging.getLogger("stork.extender")
RUNNING = "status.phase=Running"


def build_parser() -> cli.EnvDefaultsParser:
    parser = cli.EnvDefaultsParser(
        prog="stork-extender",
        description="kube-scheduler extender that keeps pods on nodes holding their volumes' replicas.",
    )
    cli.add_cluster_arguments(parser)
    cli.add_serving_arguments(parser, default_bind="0.0.0.0:8099")
    parser.add_argument(
        "--score-mode",
        default="stork",
        choices=SCORE_MODES,
        help="stork: stork-compatible scores; normalized: scaled into 0..10",
    )
    parser.add_argument(
        "--server",
        choices=["gunicorn", "granian"],
        default="granian",
        help="HTTP server. granian (default): half the server CPU per request, so kube-scheduler binds more pods "
        "per second (bench/README.md); a renewed certificate starts a new worker (serving once its caches are "
        "synced) and the old one stops 60 s later, which can fail a request in flight once (kube-scheduler "
        "retries the pod). gunicorn: a renewed certificate is served in place",
    )
    return parser


def build_app(args) -> Flask:
    kube = Kube(load_api_client(args.kubeconfig, user_agent="stork-extender"))
    cluster = ClusterState(kube)
    driver = make_driver(args.driver, cluster, cli.driver_options(args))
    # Only Running pods count in the placement gauges; pods being scheduled are Pending, so
    # the scheduling burst sends this process no pod events at all.
    cluster.store(PODS, field_selector=RUNNING)
    cluster.start()
    driver.start()
    app = create_app(driver, EventRecorder(kube, "stork-extender"), args.score_mode)
    log.info("extender started", extra={"driver": args.driver, "score_mode": args.score_mode})
    return app


def main(argv: Sequence[str] | None = None) -> None:
    cli.run_server(build_parser(), argv, build_app)


if __name__ == "__main__":
    main()
