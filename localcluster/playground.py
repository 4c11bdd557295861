"""`stork-playground`: a local cluster where stork-py places pods next to their data.

stork-playground up [--once]     build what is missing, start, show, run until Ctrl-C
stork-playground down            clean up after a run that crashed
stork-playground node NAME --offline|--online   take a node's Longhorn storage down or up
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from localcluster import realnode, simulate
from localcluster.binaries import kubernetes_bin_dir
from localcluster.cluster import LocalCluster, NodeSpec, six_nodes
from localcluster.controlplane import ControlPlane
from localcluster.ledger import consistent, ledger_rules, run_ledger
from localcluster.processes import stop_recorded
from localcluster.progress import step
from localcluster.realnode import local_volume_claim, run_on_real_node
from localcluster.snapshots import (
    SIMULATED_LOCAL_DRIVER,
    SimulatedSnapshotter,
    interval_policy,
    snapshot_class,
    snapshot_schedule,
)
from localcluster.stork import console_script
from storkcore import objects
from storkcore.kube import PVCS, Kube, Resource, load_api_client
from storkcore.snapshots import GROUP_SNAPSHOTS

NAMESPACE = "demo"
PODS_IN_DEMO = Resource("", "v1", "pods", NAMESPACE)
# (deployment, Longhorn replica nodes or None for no volume, access mode)
DEMO = [
    ("postgres", ["node-0", "node-4"], "rwo"),
    ("redis", ["node-2", "node-5"], "rwo"),
    ("files", ["node-1", "node-3"], "rwx"),  # shared over NFS: placed away from its replicas
    ("web", None, ""),
]


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "stork-py" / "playground"


def say(message: str) -> None:
    print(message, flush=True)


def tell(message: str) -> None:
    """Say, during clean-up: a closed stdout must not keep anything from stopping."""
    with contextlib.suppress(OSError):
        say(message)


def cmd_up(args: argparse.Namespace) -> int:
    cleaned = clean_up(quiet=True)
    if cleaned:
        say(f"stopped what a previous run left: {', '.join(cleaned)}")
    say("Kubernetes binaries: building them if missing (once, about 10 minutes; the build counts its packages) ...")
    bin_dir = kubernetes_bin_dir(show_build=True)
    workdir = state_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(ControlPlane(workdir, bin_dir))
    cluster.keep_workdir = True
    stopping = {"now": False}
    snapshotter: SimulatedSnapshotter | None = None

    def on_signal(signum: int, _frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with step("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler"):
            cluster.start()
        with step("starting stork-extender, stork-webhook and the stork scheduler"):
            cluster.add_stork("longhorn")
        nodes = six_nodes()
        with step("creating simulated nodes with Longhorn storage") as progress:
            cluster.add_nodes(nodes, progress=progress.count)
        with step("deploying the demo applications"):
            deploy_demo(cluster.kube())
        snapshotter = None
        if args.real_node:
            with step("starting containerd and a kubelet: one real node that runs pods"):
                start_local_demo(cluster)
            with step("starting stork-controller and a simulated CSI snapshotter; snapshotting the ledger"):
                snapshotter = start_snapshot_demo(cluster, workdir)
        show(cluster.kube(), nodes)
        show_explain(cluster)
        if snapshotter is not None:
            show_local_demo(cluster)
            show_snapshot_demo(cluster, snapshotter)
        print_usage(cluster, bin_dir)
        if args.once:
            return 0
        say("\nRunning. Ctrl-C stops the cluster and cleans up.")
        while not stopping["now"]:
            time.sleep(0.5)
        return 0
    finally:
        if snapshotter is not None:
            tell("stopping the simulated CSI snapshotter ...")
            snapshotter.stop()
        cluster.stop(report=tell)
        tell("removing the playground's folder ...")
        shutil.rmtree(workdir, ignore_errors=True)
        tell("stopped and cleaned up")


def deploy_demo(kube: Kube) -> None:
    simulate.longhorn_class(kube)
    simulate.ensure_namespace(kube, NAMESPACE)
    for app, replica_nodes, access_mode in DEMO:
        claims = []
        if replica_nodes:
            volume = f"pvc-{app}"
            simulate.add_longhorn_volume(kube, volume, replica_nodes, access_mode=access_mode)
            simulate.longhorn_claim(kube, NAMESPACE, f"{app}-data", volume)
            simulate.wait_bound_claim(kube, NAMESPACE, f"{app}-data")
            claims.append(f"{app}-data")
        simulate.deployment(kube, NAMESPACE, app, claims)


def show(kube: Kube, nodes: list[NodeSpec]) -> None:
    """A table of the demo's pods, where they run, and where their data is."""
    where = {n.name: n for n in nodes}
    replicas = simulate.replica_nodes(kube)
    deadline = time.monotonic() + 90
    pods: list[dict] = []
    while time.monotonic() < deadline:
        pods = [p for p in kube.list(PODS_IN_DEMO)[0] if not p["metadata"].get("deletionTimestamp")]
        if len(pods) >= len(DEMO) and all(p["spec"].get("nodeName") for p in pods):
            break
        time.sleep(0.5)
    demo = {app: (replica_nodes, mode) for app, replica_nodes, mode in DEMO}
    rows = [("POD", "SCHEDULER", "NODE", "ZONE", "RACK", "REPLICAS ON", "DATA")]
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        app = pod["metadata"].get("labels", {}).get("app", "")
        node = pod["spec"].get("nodeName") or "(pending)"
        holders = sorted(replicas.get(f"pvc-{app}", []))
        spec = where.get(node)
        rows.append(
            (
                pod["metadata"]["name"],
                pod["spec"].get("schedulerName", ""),
                node,
                spec.zone if spec else "",
                spec.rack if spec else "",
                ", ".join(holders) or "-",
                _data_note(demo.get(app, (None, ""))[1], holders, node),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    say("")
    for row in rows:
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _data_note(access_mode: str, holders: list[str], node: str) -> str:
    if not holders:
        return "no volumes"
    if access_mode == "rwx":
        return "shared volume: served over the network, kept off replica nodes"
    return "local replica" if node in holders else "remote"


LOCAL_NAMESPACE = "demo-local"
LOCAL_LABELS = {"stork-py/volumes": "local"}


def start_local_demo(cluster: LocalCluster) -> None:
    """stork for local volumes (the csi driver) and a pod that really runs, on a local volume."""
    node = cluster.add_real_node({"topology.kubernetes.io/zone": "zone-a", "stork.libopenstorage.org/rack": "rack-0"})
    cluster.add_stork(
        "csi",
        ["--csi-driver-name", "kubernetes.io/no-provisioner"],
        scheduler_name="stork-local",
        namespace_labels=LOCAL_LABELS,
    )
    kube = cluster.kube()
    simulate.ensure_namespace(kube, LOCAL_NAMESPACE, LOCAL_LABELS)
    local_volume_claim(kube, LOCAL_NAMESPACE, "notes-data", node.folder / "volumes" / "notes")
    run_on_real_node(
        kube, LOCAL_NAMESPACE, "notes", "notes-data", "while true; do date >> /data/notes.log; sleep 5; done"
    )


def show_local_demo(cluster: LocalCluster) -> None:
    kube = cluster.kube()
    pods = Resource("", "v1", "pods", LOCAL_NAMESPACE)

    def running() -> dict | None:
        notes = [p for p in kube.list(pods)[0] if p["metadata"].get("labels", {}).get("app") == "notes"]
        return next((p for p in notes if p.get("status", {}).get("phase") == "Running"), None)

    deadline = time.monotonic() + 90
    pod = running()
    while pod is None and time.monotonic() < deadline:
        time.sleep(0.5)
        pod = running()
    if pod is None:
        say("\nthe pod on the real node did not start (see the kubelet log)")
        return
    assert cluster.real_node is not None
    log = cluster.real_node.folder / "volumes" / "notes" / "notes.log"
    say(
        f"\nOn the real node: {LOCAL_NAMESPACE}/{pod['metadata']['name']} is Running on "
        f"{pod['spec']['nodeName']} (scheduler {pod['spec']['schedulerName']}), writing to its local volume:"
        f"\n  {log}"
    )


SNAPSHOT_NAME = "ledger-snapshot"


def start_snapshot_demo(cluster: LocalCluster, workdir: Path) -> SimulatedSnapshotter:
    """The ledger (transactions across two local volumes), its rules, and a GroupVolumeSnapshot."""
    kube = cluster.kube()
    assert cluster.real_node is not None
    for claim in ("a", "b"):
        local_volume_claim(kube, LOCAL_NAMESPACE, claim, cluster.real_node.folder / "volumes" / f"ledger-{claim}")
        kube.patch(PVCS, LOCAL_NAMESPACE, claim, {"metadata": {"labels": {"app": "ledger"}}})
    run_ledger(kube, LOCAL_NAMESPACE)
    ledger_rules(kube, LOCAL_NAMESPACE)
    snapshot_class(kube, "local-snapshots", SIMULATED_LOCAL_DRIVER)
    snapshotter = SimulatedSnapshotter(kube, workdir / "snapshots").start()
    cluster.start_controller(
        "stork-controller",
        "csi",
        [
            "--csi-driver-name",
            "kubernetes.io/no-provisioner",
            "--no-leader-elect",
            "--rule-hold-timeout",
            "60",
            "--snapshot-cut-timeout",
            "30",
            "--unsafe-interval-minute-seconds",
            "10",  # the demo schedule's "every 3 minutes" passes in 30 s
        ],
    )
    kube.create(
        GROUP_SNAPSHOTS,
        LOCAL_NAMESPACE,
        {
            "apiVersion": "stork.libopenstorage.org/v1alpha1",
            "kind": "GroupVolumeSnapshot",
            "metadata": {"name": SNAPSHOT_NAME},
            "spec": {
                "pvcSelector": {"matchLabels": {"app": "ledger"}},
                "preExecRule": "quiesce",
                "postExecRule": "record",
            },
        },
    )
    interval_policy(kube, "demo-frequent", minutes=3, retain=3)
    snapshot_schedule(
        kube,
        LOCAL_NAMESPACE,
        "ledger",
        "demo-frequent",
        {"app": "ledger"},
        preExecRule="quiesce",
        postExecRule="record",
    )
    return snapshotter


def show_snapshot_demo(cluster: LocalCluster, snapshotter: SimulatedSnapshotter) -> None:
    kube = cluster.kube()
    deadline = time.monotonic() + 120
    group = kube.get(GROUP_SNAPSHOTS, LOCAL_NAMESPACE, SNAPSHOT_NAME)
    while objects.text(group, "status", "status") not in ("Successful", "Failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        group = kube.get(GROUP_SNAPSHOTS, LOCAL_NAMESPACE, SNAPSHOT_NAME)
    status = objects.mapping(group, "status")
    say(
        f"\nGroupVolumeSnapshot {LOCAL_NAMESPACE}/{SNAPSHOT_NAME} of the ledger (rules quiesce/record): "
        f"stage {status.get('stage', '-')}, status {status.get('status', '-')}"
        + (f" ({status['reason']})" if status.get("reason") else "")
    )
    copies = {}
    for entry in objects.items(group, "status", "volumeSnapshots"):
        handle = snapshotter.handle_of(LOCAL_NAMESPACE, entry["volumeSnapshotName"])
        copies[entry["parentVolumeID"]] = handle
        say(f"  PVC {entry['parentVolumeID']}: VolumeSnapshot {entry['volumeSnapshotName']}, copy in {handle}")
    if set(copies) == {"a", "b"}:
        agree = "consistent" if consistent(copies["a"], copies["b"]) else "NOT consistent"
        say(f"  the two copies are {agree}: every transaction is in both or in neither")
    say("\nA schedule snapshots the ledger every 30 s here (keeps 3); storkctl shows them:")
    storkctl(cluster, "get", "schedules", "-n", LOCAL_NAMESPACE)
    storkctl(cluster, "get", "groupsnapshots", "-n", LOCAL_NAMESPACE)


def show_explain(cluster: LocalCluster) -> None:
    """Why the postgres pod landed where it did, as `storkctl explain` tells it."""
    pods = [p for p in cluster.kube().list(PODS_IN_DEMO)[0] if p["metadata"].get("labels", {}).get("app") == "postgres"]
    if pods:
        say("\nWhy postgres runs where it runs (storkctl explain):")
        storkctl(cluster, "explain", "pod", pods[0]["metadata"]["name"], "-n", NAMESPACE, "--driver", "longhorn")


def storkctl(cluster: LocalCluster, *args: str) -> None:
    run = subprocess.run(
        [console_script("storkctl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    for line in (run.stdout + run.stderr).rstrip().splitlines():
        say(("  " + line).rstrip())


def print_usage(cluster: LocalCluster, bin_dir: Path) -> None:
    say(
        f"""
Use kubectl against it:
  export KUBECONFIG={cluster.kubeconfig}
  alias kubectl={bin_dir / "kubectl"}
  kubectl get pods -n {NAMESPACE} -o wide
  kubectl -n longhorn-system get replicas.longhorn.io,nodes.longhorn.io
  kubectl -n demo-local exec deploy/notes -- tail -3 /data/notes.log     (the real node's pod)

Snapshots of the ledger (a real pod on two local volumes), and a restore:
  kubectl -n {LOCAL_NAMESPACE} get groupvolumesnapshots,volumesnapshots
  storkctl restore {SNAPSHOT_NAME} -n {LOCAL_NAMESPACE} --suffix restored
  storkctl get schedules -n {LOCAL_NAMESPACE}; storkctl get groupsnapshots -n {LOCAL_NAMESPACE}
  storkctl explain pod POD -n {NAMESPACE} --driver longhorn

Take a node's storage down and watch the next pod avoid it:
  stork-playground node node-0 --offline
  kubectl -n {NAMESPACE} delete pod -l app=postgres
  kubectl -n {NAMESPACE} get pods -o wide

Logs (JSON lines) are in {cluster.control_plane.procs.logs}."""
    )


def clean_up(quiet: bool = False) -> list[str]:
    workdir = state_dir()
    stopped = stop_recorded(workdir) if workdir.exists() else []
    realnode.clean(workdir / "realnode")  # containers, mounts and cgroups outlive their kubelet
    shutil.rmtree(workdir, ignore_errors=True)
    if not quiet:
        say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return stopped


def cmd_down(args: argparse.Namespace) -> int:
    clean_up()
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    kubeconfig = state_dir() / "kubeconfig"
    if not kubeconfig.exists():
        say("no playground is running (stork-playground up)")
        return 1
    kube = Kube(load_api_client(str(kubeconfig)))
    simulate.set_longhorn_node(kube, args.name, ready=args.online)
    say(f"Longhorn node {args.name} is now {'online' if args.online else 'offline'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stork-playground", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a local cluster with stork and a demo workload")
    up.add_argument("--once", action="store_true", help="show the placement, then stop and clean up")
    up.add_argument(
        "--real-node",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a real node (containerd + kubelet, needs root) running a demo pod on a local volume",
    )
    up.set_defaults(run=cmd_up)
    down = commands.add_parser("down", help="clean up after a crashed run")
    down.set_defaults(run=cmd_down)
    node = commands.add_parser("node", help="take a node's Longhorn storage offline or bring it back")
    node.add_argument("name")
    state = node.add_mutually_exclusive_group(required=True)
    state.add_argument("--offline", dest="online", action="store_false")
    state.add_argument("--online", dest="online", action="store_true")
    node.set_defaults(run=cmd_node)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))
