"""`storkctl`: day-2 commands: get, create, restore, explain, check.

kubectl-style: `--kubeconfig`, else in-cluster, else `KUBECONFIG` / `~/.kube/config`.
Exit codes: 0 done, 1 the cluster said no (not found, not ready, exists, forbidden) or a check failed,
2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from storkcore.kube import ApiError, Kube, load_api_client
from storkctl.check import add_check, run_check
from storkctl.explain import add_explain, explain_pod, print_report
from storkctl.objects import Refused, add_get_and_create, create, get
from storkctl.restore import add_restore, restore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storkctl", description="Day-2 commands for stork-py.")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG, ~/.kube/config)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_restore(commands)
    add_get_and_create(commands)
    add_explain(commands)
    add_check(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kube = Kube(load_api_client(args.kubeconfig, user_agent="storkctl"))
    except Exception as err:  # no kubeconfig, unreadable file, no in-cluster account
        print(f"error: cannot load cluster credentials: {err}", file=sys.stderr)
        return 1
    try:
        if args.command == "restore":
            restore(kube, args)
        elif args.command == "get":
            get(kube, args)
        elif args.command == "create":
            create(kube, args)
        elif args.command == "check":
            return run_check(kube, args)
        elif args.command == "explain":
            print_report(explain_pod(kube, args), args.output)
    except Refused as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ApiError as err:
        what = "no permission" if err.status == 403 else f"the API answered {err.status}"
        print(f"error: {what}: {err.body[:300]}", file=sys.stderr)
        return 1
    except OSError as err:  # connection refused, DNS, TLS
        print(f"error: cannot reach the cluster: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
