"""Command-line plumbing shared by every console script.

Every flag can also come from an environment variable `STORK_<FLAG>`
(`--score-mode` -> `STORK_SCORE_MODE`); repeatable flags take a
comma-separated list there. The command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from storkcore.drivers import DriverOptions, available_drivers
from storkcore.matching import TopologyLabels

LOG_LEVELS = ("debug", "info", "warning", "error")


def env_name(flag: str) -> str:
    return "STORK_" + flag.lstrip("-").replace("-", "_").upper()


class EnvDefaultsParser(argparse.ArgumentParser):
    """An ArgumentParser whose defaults come from STORK_* environment variables."""

    def add_argument(self, *flags: str, **kwargs):  # type: ignore[override]
        long_flags = [f for f in flags if f.startswith("--")]
        if long_flags and kwargs.get("action") not in ("help", "version"):
            variable = env_name(long_flags[0])
            raw = os.environ.get(variable)
            if raw is not None:
                kwargs["default"] = _from_env(raw, kwargs)
                kwargs["required"] = False
            help_text = kwargs.get("help") or ""
            if help_text != argparse.SUPPRESS:
                kwargs["help"] = f"{help_text} [env {variable}]".strip()
        return super().add_argument(*flags, **kwargs)


def _from_env(raw: str, kwargs: dict) -> object:
    action = kwargs.get("action")
    if action == "append":
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(action, type) and issubclass(action, argparse.BooleanOptionalAction):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    convert = kwargs.get("type")
    return convert(raw) if callable(convert) else raw


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    add_driver_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="log level")


def add_driver_arguments(parser: argparse.ArgumentParser, driver_required: bool = True) -> None:
    """The driver and how it reads the cluster (the same flags for every command that uses one)."""
    parser.add_argument(
        "--driver", required=driver_required, help=f"storage driver ({', '.join(sorted(available_drivers()))})"
    )
    parser.add_argument(
        "--csi-driver-name",
        action="append",
        default=[],
        help="CSI driver name the csi driver owns (repeatable; kubernetes.io/no-provisioner for local PVs)",
    )
    parser.add_argument("--longhorn-namespace", default="longhorn-system", help="namespace of Longhorn's objects")
    parser.add_argument(
        "--storage-budget",
        type=float,
        default=2.0,
        help="seconds a request may wait for an external storage API before failing open (pxd, linstor)",
    )
    parser.add_argument(
        "--node-refresh-interval", type=float, default=10.0, help="seconds between storage node listings"
    )
    parser.add_argument(
        "--volume-refresh-interval", type=float, default=30.0, help="seconds before a cached volume is read again"
    )
    parser.add_argument("--px-endpoint", default="", help="Portworx REST URL (default: PX_ENDPOINT, portworx-service)")
    parser.add_argument("--px-ca-file", default="", help="CA bundle for a TLS Portworx endpoint")
    parser.add_argument(
        "--linstor-controllers", default="", help="LINSTOR controller URL(s), comma-separated (default: LS_CONTROLLERS)"
    )
    parser.add_argument("--linstor-client-cert", default="", help="client certificate (PEM) for LINSTOR over HTTPS")
    parser.add_argument("--linstor-client-key", default="", help="its private key (PEM)")
    parser.add_argument("--linstor-ca-file", default="", help="CA bundle for LINSTOR over HTTPS")
    parser.add_argument("--zone-label", action="append", default=[], help="node label(s) for the zone level")
    parser.add_argument("--region-label", action="append", default=[], help="node label(s) for the region level")
    parser.add_argument("--rack-label", action="append", default=[], help="node label(s) for the rack level")


def add_serving_arguments(parser: argparse.ArgumentParser, default_bind: str, tls_required: bool = False) -> None:
    parser.add_argument("--bind", default=default_bind, help="HOST:PORT to listen on")
    parser.add_argument("--certfile", required=tls_required, help="TLS certificate (PEM), re-read when it changes")
    parser.add_argument("--keyfile", required=tls_required, help="TLS private key (PEM), re-read when it changes")
    parser.add_argument("--threads", type=int, default=8, help="request threads")


def driver_options(args: argparse.Namespace) -> DriverOptions:
    defaults = TopologyLabels()
    return DriverOptions(
        csi_driver_names=tuple(args.csi_driver_name),
        longhorn_namespace=args.longhorn_namespace,
        storage_budget=args.storage_budget,
        node_refresh_interval=args.node_refresh_interval,
        volume_refresh_interval=args.volume_refresh_interval,
        px_endpoint=args.px_endpoint,
        px_ca_file=args.px_ca_file,
        linstor_controllers=args.linstor_controllers,
        linstor_client_cert=args.linstor_client_cert,
        linstor_client_key=args.linstor_client_key,
        linstor_ca_file=args.linstor_ca_file,
        topology=TopologyLabels(
            zone=tuple(args.zone_label) or defaults.zone,
            region=tuple(args.region_label) or defaults.region,
            rack=tuple(args.rack_label) or defaults.rack,
        ),
    )


def check_tls_pair(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")


def run_server(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    build_app: Callable[[argparse.Namespace], Any],
    workers: Callable[[argparse.Namespace], int] = lambda args: 1,
) -> None:
    """Parse, check, log as JSON, then serve the app under gunicorn (built in the worker)."""
    from storkcore.cluster import ClusterState
    from storkcore.drivers import make_driver
    from storkcore.logs import setup_logging
    from storkcore.serving import serve, serve_granian

    args = parser.parse_args(argv)
    check_tls_pair(parser, args)
    setup_logging(args.log_level)
    # Fail before forking when the driver name or its options are wrong.
    try:
        make_driver(args.driver, ClusterState(), driver_options(args))
    except ValueError as err:
        parser.error(str(err))
    if getattr(args, "server", "gunicorn") == "granian":
        serve_granian(
            lambda: build_app(args), args.bind, args.certfile, args.keyfile, args.threads, workers=workers(args)
        )
        return
    serve(
        lambda: build_app(args),
        args.bind,
        args.certfile,
        args.keyfile,
        threads=args.threads,
        log_level=args.log_level,
        workers=workers(args),
    )
