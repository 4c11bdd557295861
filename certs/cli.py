"""`stork-certs`: create, store, inject and rotate the webhooks' certificates."""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Sequence
from pathlib import Path

from certs import authority as ca_tools
from storkcore.cli import EnvDefaultsParser
from storkcore.kube import CONFIG_MAPS, SECRETS, WEBHOOK_CONFIGS, ApiError, Kube, load_api_client


def say(message: str) -> None:
    print(f"stork-certs: {message}", file=sys.stderr)


def cmd_create(args: argparse.Namespace) -> int:
    out = Path(args.out)
    ca = ca_tools.create_ca(days=args.ca_days)
    names = ca_tools.service_names(args.service, args.namespace) + list(args.host)
    serving = ca_tools.create_serving(ca, names, list(args.ip), days=args.days)
    ca_tools.save(out, ca, serving)
    say(f"wrote {out}/{{ca.crt,ca.key,tls.crt,tls.key}}, serving certificate valid until {serving.expires():%Y-%m-%d}")
    return 0


def secret_body(name: str, namespace: str, folder: Path) -> dict:
    files = {key: folder / key for key in (ca_tools.TLS_CERT, ca_tools.TLS_KEY, ca_tools.CA_CERT, ca_tools.CA_KEY)}
    data = {key: base64.b64encode(path.read_bytes()).decode() for key, path in files.items() if path.exists()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "stork-py"}},
        "data": data,
    }


def write_secret(kube: Kube, name: str, namespace: str, folder: Path, owner_configmap: str = "") -> None:
    body = secret_body(name, namespace, folder)
    if owner_configmap:
        body["metadata"]["ownerReferences"] = [_owner(kube, namespace, owner_configmap)]
    existing = kube.get(SECRETS, namespace, name)
    if existing is None:
        kube.create(SECRETS, namespace, body)
        say(f"created Secret {namespace}/{name}")
    else:
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        kube.request("PUT", SECRETS.object_path(namespace, name), body=body)
        say(f"updated Secret {namespace}/{name}")


def _owner(kube: Kube, namespace: str, config_map: str) -> dict:
    """An owner reference to a ConfigMap (not blocking its deletion: that would need more rights)."""
    owner = kube.get(CONFIG_MAPS, namespace, config_map)
    if owner is None:
        raise SystemExit(f"stork-certs: ConfigMap {namespace}/{config_map} (--owner-configmap) does not exist")
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": config_map, "uid": owner["metadata"]["uid"]}


def cmd_secret(args: argparse.Namespace) -> int:
    kube = Kube(load_api_client(args.kubeconfig, user_agent="stork-certs"))
    write_secret(kube, args.name, args.namespace, Path(args.dir), args.owner_configmap)
    return 0


def write_ca_bundle(kube: Kube, kind: str, config_name: str, bundle_b64: str) -> bool | None:
    """Put the CA bundle into every webhook of one configuration. None: there is no such
    configuration; False: it holds this bundle already (nothing written); True: written."""
    resource = WEBHOOK_CONFIGS[kind]
    config = kube.get(resource, "", config_name)
    if config is None:
        return None
    hooks = config.get("webhooks") or []
    if all((hook.get("clientConfig") or {}).get("caBundle") == bundle_b64 for hook in hooks):
        return False
    for hook in hooks:
        hook.setdefault("clientConfig", {})["caBundle"] = bundle_b64
    kube.request("PUT", resource.object_path("", config_name), body=config)
    return True


def inject_ca_bundle(kube: Kube, config_name: str, ca_pem: bytes, kinds: Sequence[str], first_only: bool) -> list[str]:
    """Write the CA bundle into every webhook of the named configuration(s); returns their kinds."""
    bundle = base64.b64encode(ca_pem).decode()
    done = []
    for kind in kinds:
        if write_ca_bundle(kube, kind, config_name, bundle) is None:
            continue
        done.append(kind)
        if first_only:
            break
    if not done:
        raise LookupError(f"no {' or '.join(kinds)} webhook configuration named {config_name}")
    return done


def cmd_inject(args: argparse.Namespace) -> int:
    kube = Kube(load_api_client(args.kubeconfig, user_agent="stork-certs"))
    ca_pem = Path(args.ca_file).read_bytes()
    kinds = ["mutating", "validating"] if args.kind in ("auto", "all") else [args.kind]
    for name in args.webhook_config:
        for kind in inject_ca_bundle(kube, name, ca_pem, kinds, first_only=args.kind == "auto"):
            say(f"CA bundle written into {kind} webhook configuration {name}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    serving = ca_tools.load(folder / ca_tools.TLS_CERT, folder / ca_tools.TLS_KEY)
    if not ca_tools.expires_within(serving, args.before):
        say(f"serving certificate valid until {serving.expires():%Y-%m-%d}: nothing to do")
        return 0
    ca = ca_tools.load(folder / ca_tools.CA_CERT, folder / ca_tools.CA_KEY)
    if ca_tools.expires_within(ca, args.days):
        say("the CA expires before a renewed certificate would: run `stork-certs create` and inject the new CA")
        return 2
    # Same CA, so the bundle in the webhook configurations stays valid.
    renewed = ca_tools.create_serving(
        ca, ca_tools.dns_names_of(serving.cert), ca_tools.ips_of(serving.cert), days=args.days
    )
    ca_tools.save(folder, ca, renewed)
    say(f"serving certificate renewed, valid until {renewed.expires():%Y-%m-%d}")
    if args.secret:
        write_secret(
            Kube(load_api_client(args.kubeconfig, user_agent="stork-certs")), args.secret, args.namespace, folder
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = EnvDefaultsParser(prog="stork-certs", description="Certificates for stork-py's webhooks.")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create", help="a new CA and serving certificate")
    create.add_argument("--service", required=True, help="Service name of the webhook")
    create.add_argument("--namespace", required=True, help="namespace of the Service")
    create.add_argument("--out", required=True, help="folder for ca.crt, ca.key, tls.crt, tls.key")
    create.add_argument("--host", action="append", default=[], help="extra DNS name (repeatable)")
    create.add_argument("--ip", action="append", default=[], help="extra IP address (repeatable)")
    create.add_argument("--days", type=float, default=365, help="serving certificate validity (fractions allowed)")
    create.add_argument("--ca-days", type=float, default=3650, help="CA validity (fractions allowed)")
    create.set_defaults(run=cmd_create)

    secret = commands.add_parser("secret", help="store the files as a kubernetes.io/tls Secret (with ca.crt)")
    secret.add_argument("--name", required=True)
    secret.add_argument("--namespace", required=True)
    secret.add_argument("--dir", required=True, help="folder written by create")
    secret.add_argument("--kubeconfig")
    secret.add_argument(
        "--owner-configmap",
        default="",
        help="a ConfigMap of the same namespace that owns the Secret: deleting the install (helm uninstall, "
        "kubectl delete -k) deletes the Secret with it",
    )
    secret.set_defaults(run=cmd_secret)

    inject = commands.add_parser("inject", help="write the CA bundle into webhook configurations")
    inject.add_argument("--webhook-config", action="append", required=True, help="configuration name (repeatable)")
    inject.add_argument("--ca-file", required=True)
    inject.add_argument(
        "--kind",
        choices=["auto", "all", "mutating", "validating"],
        default="auto",
        help="auto: the first found; all: both kinds that exist (at least one must)",
    )
    inject.add_argument("--kubeconfig")
    inject.set_defaults(run=cmd_inject)

    rotate = commands.add_parser("rotate", help="renew the serving certificate when close to expiry, keeping the CA")
    rotate.add_argument("--dir", required=True)
    rotate.add_argument("--before", type=float, required=True, help="renew when it expires within DAYS")
    rotate.add_argument("--days", type=float, default=365, help="validity of the renewed certificate")
    rotate.add_argument("--secret", help="also update this Secret")
    rotate.add_argument("--namespace", default="stork", help="namespace of --secret")
    rotate.add_argument("--kubeconfig")
    rotate.set_defaults(run=cmd_rotate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.run(args))
    except (OSError, ValueError, LookupError, ApiError) as err:
        say(f"error: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
