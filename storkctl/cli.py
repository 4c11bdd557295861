"""`storkctl`: day-2 commands: get, create, restore, explain.

kubectl-style: `--kubeconfig`, else in-cluster, else `KUBECONFIG` / `~/.kube/config`.
Exit codes: 0 done, 1 the cluster said no (not found, not ready, exists, forbidden), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from storkcore import objects
from storkcore.kube import PVCS, ApiError, Kube, load_api_client
from storkcore.snapshots import GROUP_SNAPSHOTS, SNAPSHOT_GROUP, SUCCESSFUL, VOLUME_SNAPSHOTS
from storkctl.explain import add_explain, explain_pod, print_report
from storkctl.objects import Refused, add_get_and_create, create, get

RESTORED_FROM = "stork.libopenstorage.org/restored-from"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storkctl", description="Day-2 commands for stork-py.")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG, ~/.kube/config)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    restore = commands.add_parser(
        "restore",
        help="new PVCs from every snapshot of a Successful GroupVolumeSnapshot",
        description="Create a PVC from each VolumeSnapshot of a GroupVolumeSnapshot, with the source PVC's size, "
        "class and access modes, in the group's namespace (CSI restores within a namespace).",
    )
    restore.add_argument("group", metavar="GROUPSNAPSHOT")
    restore.add_argument("-n", "--namespace", default="default", help="namespace of the GroupVolumeSnapshot")
    restore.add_argument("--suffix", default="", help="name the new PVCs SOURCE-SUFFIX (default: the source's name)")
    restore.add_argument("--dry-run", action="store_true", help="print the PVCs, create nothing")
    add_get_and_create(commands)
    add_explain(commands)
    return parser


def restore_claims(kube: Kube, namespace: str, group_name: str, suffix: str) -> list[dict[str, Any]]:
    """The PVCs that restore every volume of a Successful group (not created yet)."""
    group = kube.get(GROUP_SNAPSHOTS, namespace, group_name)
    if group is None:
        raise Refused(f"groupvolumesnapshot {namespace}/{group_name} not found")
    state = objects.text(group, "status", "status")
    if state != SUCCESSFUL:
        reason = objects.text(group, "status", "reason")
        raise Refused(
            f"groupvolumesnapshot {group_name} is {state or 'new'}, not Successful{': ' + reason if reason else ''}"
        )
    claims = []
    for entry in objects.items(group, "status", "volumeSnapshots"):
        snapshot_name, source_name = objects.text(entry, "volumeSnapshotName"), objects.text(entry, "parentVolumeID")
        snapshot = kube.get(VOLUME_SNAPSHOTS, namespace, snapshot_name)
        if snapshot is None:
            raise Refused(f"volumesnapshot {namespace}/{snapshot_name} of the group no longer exists")
        source = kube.get(PVCS, namespace, source_name)
        name = f"{source_name}-{suffix}" if suffix else source_name
        claims.append(_claim(namespace, group_name, name, snapshot, source))
    return claims


def _claim(namespace: str, group: str, name: str, snapshot: dict[str, Any], source: dict[str, Any] | None) -> dict:
    size = objects.text(source, "spec", "resources", "requests", "storage") or objects.text(
        snapshot, "status", "restoreSize"
    )
    if not size:
        raise Refused(
            f"volumesnapshot {objects.name(snapshot)}: source PVC gone and no restoreSize to size the new one"
        )
    spec: dict[str, Any] = {
        "accessModes": list(objects.items(source, "spec", "accessModes")) or ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": objects.name(snapshot)},
    }
    if source is not None and "storageClassName" in objects.mapping(source, "spec"):
        spec["storageClassName"] = objects.mapping(source, "spec")["storageClassName"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**objects.labels(source), RESTORED_FROM: group},
        },
        "spec": spec,
    }


def restore(kube: Kube, args: argparse.Namespace) -> None:
    claims = restore_claims(kube, args.namespace, args.group, args.suffix)
    for claim in claims:
        name, source = objects.name(claim), claim["spec"]["dataSource"]["name"]
        if args.dry_run:
            print(f"persistentvolumeclaim/{name} would be created from volumesnapshot/{source}")
            continue
        try:
            kube.create(PVCS, args.namespace, claim)
        except ApiError as err:
            if err.status == 409:
                raise Refused(f"persistentvolumeclaim {args.namespace}/{name} already exists (use --suffix)") from err
            raise
        print(f"persistentvolumeclaim/{name} created from volumesnapshot/{source}")


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
