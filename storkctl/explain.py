"""`storkctl explain pod NAME`: the storage view the extender has of one pod, node by node.

It runs the extender's own code (`extender.app.Extender.filter` and `.prioritize`, over a
ClusterState synced from the live API, as the extender's is) for every node, so its verdicts
and scores are the ones the extender answers; the parts of each score come from
`extender.scoring.explain_score`, the same arithmetic written down.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from extender.app import Extender
from extender.metrics import ExtenderMetrics
from extender.protocol import ExtenderArgs
from extender.scoring import explain_score
from storkcore import annotations as ann
from storkcore import cli, objects
from storkcore.cluster import ClusterState
from storkcore.drivers import make_driver
from storkcore.events import EventRecorder
from storkcore.kube import CONFIG_MAPS, NODES, PODS, Kube
from storkcore.locality import held_nodes
from storkcore.pods import assess_pod, claim_names
from storkctl.objects import Refused, print_table


def add_explain(commands: argparse._SubParsersAction) -> None:
    explain_cmd = commands.add_parser(
        "explain",
        help="why a pod's nodes pass or fail stork's filter, and how each scores",
        description="For one pod: its claims, volumes and replica nodes; for every node the filter's verdict and "
        "the score with its parts; then the node the scheduler chose. Runs the extender's own code.",
    )
    what = explain_cmd.add_subparsers(dest="what", required=True, metavar="pod")
    pod = what.add_parser("pod", help="explain one pod's placement")
    pod.add_argument("name")
    pod.add_argument("-n", "--namespace", default="default")
    pod.add_argument("-o", "--output", choices=("table", "json"), default="table")
    pod.add_argument("--score-mode", choices=("stork", "normalized"), help="default: the installed extender's")
    pod.add_argument("--stork-namespace", default="stork", help="where stork-py's ConfigMap stork-config is")
    pod.add_argument("--sync-timeout", type=float, default=60.0, help="seconds to wait for the caches")
    cli.add_driver_arguments(pod, driver_required=False)


def installed_settings(kube: Kube, args: argparse.Namespace, namespace: str, config_name: str = "stork-config") -> None:
    """Without --driver: the driver (and its flags) of the stork-py installed in the cluster."""
    config = kube.get(CONFIG_MAPS, namespace, config_name)
    data = objects.mapping(config, "data")
    if args.driver is None:
        if not data.get("STORK_DRIVER"):
            raise Refused(f"no --driver given and no STORK_DRIVER in {namespace}/{config_name}")
        args.driver = data["STORK_DRIVER"]
        if not args.csi_driver_name and data.get("STORK_CSI_DRIVER_NAME"):
            args.csi_driver_name = str(data["STORK_CSI_DRIVER_NAME"]).split(",")
        args.longhorn_namespace = data.get("STORK_LONGHORN_NAMESPACE") or args.longhorn_namespace
        # The installed storage endpoints are in-cluster addresses: used when explain runs
        # in the cluster, else pass --px-endpoint / --linstor-controllers (a port-forward).
        args.px_endpoint = args.px_endpoint or data.get("STORK_PX_ENDPOINT") or ""
        args.linstor_controllers = args.linstor_controllers or data.get("LS_CONTROLLERS") or ""
    if hasattr(args, "score_mode"):  # explain's; check has none
        args.score_mode = args.score_mode or data.get("STORK_SCORE_MODE") or "stork"


def explain_pod(kube: Kube, args: argparse.Namespace) -> dict[str, Any]:
    installed_settings(kube, args, args.stork_namespace)
    pod = kube.get(PODS, args.namespace, args.name)
    if pod is None:
        raise Refused(f"pod {args.namespace}/{args.name} not found")
    cluster = ClusterState(kube)
    try:
        driver = make_driver(args.driver, cluster, cli.driver_options(args))
    except ValueError as err:
        raise Refused(str(err)) from err
    cluster.start()
    driver.start()
    try:
        if not cluster.wait_synced(args.sync_timeout):
            raise Refused(f"the cluster's objects did not load within {args.sync_timeout:.0f}s")
        if not driver.wait_ready(args.sync_timeout):
            raise Refused(f"the {args.driver} storage API did not answer within {args.sync_timeout:.0f}s")
        return _report(driver, pod, args)
    finally:
        driver.stop()
        cluster.stop()


def _report(driver, pod: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    storage = assess_pod(driver, pod)
    index = driver.index()
    names = sorted(objects.name(n) for n in driver.cluster.store(NODES).list())
    extender = Extender(driver, EventRecorder(None, "storkctl"), args.score_mode, ExtenderMetrics(CollectorRegistry()))
    request = ExtenderArgs(pod=pod, nodes=None, node_names=names)
    filtered = orjson.loads(extender.filter(request))
    scores = {p["Host"]: p["Score"] for p in orjson.loads(extender.prioritize(request))}
    failed = filtered.get("FailedNodes") or {}
    candidates = {c.name: c for c in extender.resolver.resolve(request)}
    node_of = {s.storage_id: s.hostname or s.scheduler_id or s.storage_id for s in index.by_id.values()}
    chosen = objects.text(pod, "spec", "nodeName")
    chosen_storage = candidates[chosen].storage_id if chosen in candidates else ""
    holders = {n for v in storage.volumes for n in v.data_nodes} - {""}
    rows = []
    for name in names:
        _, parts = explain_score(pod, storage, index.by_id, candidates[name])
        rows.append(
            {
                "node": name,
                "verdict": "fails" if name in failed else "kept",
                "reason": failed.get(name, ""),
                "score": scores.get(name, 0),
                "parts": parts,
            }
        )
    return {
        "pod": f"{args.namespace}/{args.name}",
        "scheduler": objects.text(pod, "spec", "schedulerName"),
        "driver": args.driver,
        "concerns_driver": storage.concerns_driver,
        "claims": claim_names(pod),
        "volumes": [
            {"claim": v.claim, "volume": v.id, "replicas_on": sorted(node_of.get(n, n) for n in v.data_nodes)}
            for v in storage.volumes
        ],
        "blocked": storage.blocked,
        "driver_error": storage.driver_error,
        "nodes": rows,
        "chosen": chosen,
        "chosen_holds_replica": bool(chosen_storage) and chosen_storage in holders,
        "kept_replica_nodes": [name for name in names if name not in failed and candidates[name].storage_id in holders],
        "locality": locality_of(pod),
    }


def locality_of(pod: Any) -> dict[str, Any]:
    """What the webhook did for locality at scale: the nodes it held the pod to, or why none."""
    why_not = objects.annotations(pod).get(ann.LOCALITY)
    return {"held_to": held_nodes(pod), "why_not": why_not if isinstance(why_not, str) else ""}


def print_report(report: Mapping[str, Any], output: str) -> None:
    if output == "json":
        print(json.dumps(report, indent=2))
        return
    print(f"Pod {report['pod']} (scheduler {report['scheduler'] or '-'}), driver {report['driver']}")
    if not report["concerns_driver"]:
        print(
            f"  not stork's: none of its claims ({', '.join(report['claims']) or 'none'}) is a {report['driver']} "
            "volume, so the extender keeps every node and scores none"
        )
    for volume in report["volumes"]:
        holders = ", ".join(volume["replicas_on"]) or "-"
        print(f"  claim {volume['claim']}: volume {volume['volume']}, replicas on {holders}")
    for problem in ("blocked", "driver_error"):
        if report[problem]:
            print(f"  {problem.replace('_', ' ')}: {report[problem]}")
    print(_locality_line(report["locality"]))
    rows = [["NODE", "VERDICT", "SCORE", "WHY"]]
    for row in report["nodes"]:
        why = row["reason"] if row["verdict"] == "fails" else "; ".join(row["parts"])
        rows.append([row["node"], row["verdict"], str(row["score"]), why])
    print()
    print_table(rows)
    print()
    if report["chosen"]:
        holds = "holds a replica" if report["chosen_holds_replica"] else "holds no replica"
        print(f"Scheduled on {report['chosen']}, which {holds} of the pod's volumes.")
        if not report["chosen_holds_replica"] and report["kept_replica_nodes"]:
            print(_why_not_on_a_replica(report["kept_replica_nodes"], len(report["nodes"])))
    else:
        print("Not scheduled yet.")


def _locality_line(locality: Mapping[str, Any]) -> str:
    if locality["held_to"]:
        return (
            f"  locality: held to its replica nodes {', '.join(locality['held_to'])} at admission (a required node "
            "affinity the webhook wrote), so kube-scheduler's sampling could not leave them out"
        )
    if locality["why_not"]:
        return f"  locality: {locality['why_not']}"
    return "  locality: not considered at admission (the webhook did not send this pod, or ran without it)"


def _why_not_on_a_replica(kept_replica_nodes: list[str], node_count: int) -> str:
    """kube-scheduler only offers the extender the nodes it found feasible, and above 100 nodes
    only a sample of them: the two reasons a kept replica node can lose."""
    sampled = (
        f", or it did not sample them: with {node_count} nodes it stops at percentageOfNodesToScore of the cluster"
        if node_count > 100
        else ""
    )
    return (
        f"Nodes holding a replica pass stork's filter ({', '.join(kept_replica_nodes[:5])}"
        f"{', ...' if len(kept_replica_nodes) > 5 else ''}), but kube-scheduler did not offer them: its own filters "
        f"ruled them out (resources, taints, affinity){sampled}."
    )
