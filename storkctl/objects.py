"""`storkctl get` and `storkctl create`: stork's snapshot objects, as kubectl would show them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from storkcore import objects
from storkcore.kube import ApiError, Kube, Resource
from storkcore.snapshots import GROUP_SNAPSHOTS, SCHEDULE_POLICIES, SNAPSHOT_SCHEDULES, STORK_GROUP, STORK_VERSION

KINDS: dict[str, tuple[Resource, str, tuple[str, ...]]] = {
    # plural: (resource, kind, aliases)
    "groupsnapshots": (GROUP_SNAPSHOTS, "GroupVolumeSnapshot", ("groupsnapshot", "groupvolumesnapshots", "gvs")),
    "schedules": (SNAPSHOT_SCHEDULES, "VolumeSnapshotSchedule", ("schedule", "volumesnapshotschedules", "vss")),
    "schedulepolicies": (SCHEDULE_POLICIES, "SchedulePolicy", ("schedulepolicy", "sp")),
}
ALIASES = {alias: plural for plural, (_, _, aliases) in KINDS.items() for alias in (plural, *aliases)}


class Refused(Exception):
    """What the cluster or the object's state does not allow; printed as `error: ...`, exit 1."""


def add_get_and_create(commands: argparse._SubParsersAction) -> None:
    get_cmd = commands.add_parser("get", help="list group snapshots, schedules or schedule policies")
    get_cmd.add_argument(
        "kind", choices=sorted(ALIASES), metavar="KIND", help="groupsnapshots, schedules, schedulepolicies"
    )
    get_cmd.add_argument("name", nargs="?", help="only this one")
    get_cmd.add_argument("-n", "--namespace", default="default")
    get_cmd.add_argument("-A", "--all-namespaces", action="store_true")
    get_cmd.add_argument("-o", "--output", choices=("table", "wide", "yaml", "json"), default="table")
    create_cmd = commands.add_parser("create", help="create a group snapshot or a schedule")
    kinds = create_cmd.add_subparsers(dest="kind", required=True, metavar="KIND")
    group = kinds.add_parser("groupsnapshot", help="a GroupVolumeSnapshot of PVCs chosen by labels or names")
    group.add_argument("name")
    _add_selection(group)
    group.add_argument("--max-retries", type=int, default=0)
    schedule = kinds.add_parser("schedule", help="a VolumeSnapshotSchedule: a policy applied to PVCs")
    schedule.add_argument("name")
    schedule.add_argument("--policy", required=True, help="SchedulePolicy name")
    _add_selection(schedule)
    schedule.add_argument("--suspend", action="store_true")
    schedule.add_argument("--reclaim-policy", choices=("Delete", "Retain"), default="Delete")


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--pvc-selector", help="labels the PVCs carry: k=v[,k2=v2]")
    parser.add_argument("--pvc", help="one PVC by name")
    parser.add_argument("--pre-rule", help="Rule run before the snapshots are cut")
    parser.add_argument("--post-rule", help="Rule run after they are cut")
    parser.add_argument("--dry-run", action="store_true", help="print the object, create nothing")


def parse_labels(text: str) -> dict[str, str]:
    pairs = [p for p in text.split(",") if p.strip()]
    if not pairs or not all("=" in p for p in pairs):
        raise Refused(f"--pvc-selector {text!r}: expected k=v[,k2=v2]")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


# -- get ----------------------------------------------------------------------------------


def get(kube: Kube, args: argparse.Namespace) -> None:
    plural = ALIASES[args.kind]
    resource, kind, _ = KINDS[plural]
    found = _list(kube, resource, kind, args)
    if args.output in ("yaml", "json"):
        doc = found[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": found}
        print(json.dumps(doc, indent=2) if args.output == "json" else yaml.safe_dump(doc, sort_keys=False), end="")
        if args.output == "json":
            print()
        return
    if not found:
        where = "" if plural == "schedulepolicies" or args.all_namespaces else f" in namespace {args.namespace}"
        print(f"No {plural} found{where}.")
        return
    columns = TABLES[plural](args.output == "wide")
    if args.all_namespaces and plural != "schedulepolicies":
        columns = [("NAMESPACE", objects.namespace), *columns]
    print_table([[header for header, _ in columns]] + [[str(cell(o)) for _, cell in columns] for o in found])


def _list(kube: Kube, resource: Resource, kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    namespaced = resource is not SCHEDULE_POLICIES
    namespace = args.namespace if namespaced else ""
    if args.name:
        found = kube.get(resource, namespace, args.name)
        if found is None:
            raise Refused(f"{kind} {args.name} not found" + (f" in namespace {namespace}" if namespace else ""))
        return [found]
    scope = Resource(
        resource.group, resource.version, resource.plural, None if args.all_namespaces or not namespaced else namespace
    )
    items = kube.request("GET", scope.collection_path()).get("items") or []
    for item in items:
        item.setdefault("apiVersion", f"{STORK_GROUP}/{STORK_VERSION}")
        item.setdefault("kind", kind)
    return sorted(items, key=lambda o: (objects.namespace(o), objects.name(o)))


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def age(obj: Mapping[str, Any]) -> str:
    text = objects.text(obj, "metadata", "creationTimestamp")
    try:
        seconds = int(
            (datetime.now(UTC) - datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds()
        )
    except ValueError:
        return "<unknown>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _or_dash(value: Any) -> str:
    return "-" if value in (None, "", []) else str(value)


Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def _group_columns(wide: bool) -> list[Column]:
    def snaps(o: Mapping[str, Any]) -> str:
        entries = objects.items(o, "status", "volumeSnapshots")
        return f"{sum(1 for e in entries if e.get('readyToUse'))}/{len(entries)}"

    columns: list[Column] = [
        ("NAME", objects.name),
        ("STAGE", lambda o: _or_dash(objects.text(o, "status", "stage"))),
        ("STATUS", lambda o: _or_dash(objects.text(o, "status", "status"))),
        ("READY", snaps),
        ("RETRIES", lambda o: objects.dig(o, "status", "numRetries", default=0)),
        ("AGE", age),
    ]
    if wide:
        columns += [
            ("PRE-RULE", lambda o: _or_dash(objects.text(o, "spec", "preExecRule"))),
            ("POST-RULE", lambda o: _or_dash(objects.text(o, "spec", "postExecRule"))),
            ("REASON", lambda o: _or_dash(objects.text(o, "status", "reason"))),
        ]
    return columns


def _schedule_columns(wide: bool) -> list[Column]:
    def newest(o: Mapping[str, Any]) -> dict[str, Any]:
        entries = [e for kind in objects.mapping(o, "status", "items").values() for e in kind]
        return max(entries, key=lambda e: e.get("creationTimestamp", ""), default={})

    columns: list[Column] = [
        ("NAME", objects.name),
        ("POLICY", lambda o: objects.text(o, "spec", "schedulePolicyName")),
        ("SUSPEND", lambda o: str(bool(objects.dig(o, "spec", "suspend"))).lower()),
        ("LAST", lambda o: _or_dash(newest(o).get("name"))),
        ("LAST-STATUS", lambda o: _or_dash(newest(o).get("status"))),
        ("AGE", age),
    ]
    if wide:
        columns += [
            ("RECLAIM", lambda o: objects.text(o, "spec", "reclaimPolicy") or "Delete"),
            ("ITEMS", lambda o: sum(len(v) for v in objects.mapping(o, "status", "items").values())),
        ]
    return columns


def _policy_columns(wide: bool) -> list[Column]:
    def part(kind: str, *fields: str) -> Callable[[Mapping[str, Any]], str]:
        def cell(o: Mapping[str, Any]) -> str:
            spec = objects.mapping(o, "policy", kind)
            shown = [str(spec[f]) for f in fields if f in spec]
            if wide and "retain" in spec:
                shown.append(f"retain {spec['retain']}")
            return " ".join(shown) or "-"

        return cell

    return [
        ("NAME", objects.name),
        ("INTERVAL-MINUTES", part("interval", "intervalMinutes")),
        ("DAILY", part("daily", "time")),
        ("WEEKLY", part("weekly", "day", "time")),
        ("MONTHLY", part("monthly", "date", "time")),
        ("AGE", age),
    ]


TABLES: dict[str, Callable[[bool], list[Column]]] = {
    "groupsnapshots": _group_columns,
    "schedules": _schedule_columns,
    "schedulepolicies": _policy_columns,
}


# -- create -------------------------------------------------------------------------------


def create(kube: Kube, args: argparse.Namespace) -> None:
    body = group_snapshot_body(args) if args.kind == "groupsnapshot" else schedule_body(args)
    resource = GROUP_SNAPSHOTS if args.kind == "groupsnapshot" else SNAPSHOT_SCHEDULES
    if args.dry_run:
        print(yaml.safe_dump(body, sort_keys=False), end="")
        return
    try:
        kube.create(resource, args.namespace, body)
    except ApiError as err:
        if err.status == 409:
            raise Refused(f"{body['kind']} {args.namespace}/{args.name} already exists") from err
        if err.status in (400, 422):  # our validating webhook or the schema said why
            raise Refused(_message(err)) from err
        raise
    print(f"{body['kind'].lower()}/{args.name} created")


def _message(err: ApiError) -> str:
    try:
        return str(json.loads(err.body).get("message") or err.body)
    except ValueError:
        return err.body


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    if bool(args.pvc) == bool(args.pvc_selector):
        raise Refused("say which PVCs: exactly one of --pvc NAME and --pvc-selector k=v")
    if args.pvc:
        return {"pvcNames": [args.pvc]}
    return {"pvcSelector": {"matchLabels": parse_labels(args.pvc_selector)}}


def _rules(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k, v in (("preExecRule", args.pre_rule), ("postExecRule", args.post_rule)) if v}


def group_snapshot_body(args: argparse.Namespace) -> dict[str, Any]:
    spec = {**_selection(args), **_rules(args)}
    if args.max_retries:
        spec["maxRetries"] = args.max_retries
    return {
        "apiVersion": f"{STORK_GROUP}/{STORK_VERSION}",
        "kind": "GroupVolumeSnapshot",
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": spec,
    }


def schedule_body(args: argparse.Namespace) -> dict[str, Any]:
    selection = _selection(args)
    template = (
        {"persistentVolumeClaimName": args.pvc}
        if "pvcNames" in selection
        else {"pvcSelector": selection["pvcSelector"]}
    )
    return {
        "apiVersion": f"{STORK_GROUP}/{STORK_VERSION}",
        "kind": "VolumeSnapshotSchedule",
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": {
            "schedulePolicyName": args.policy,
            "suspend": args.suspend,
            "reclaimPolicy": args.reclaim_policy,
            **_rules(args),
            "template": {"spec": template},
        },
    }
