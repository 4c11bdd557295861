"""A whole local cluster: control plane, default scheduler, stork, and simulated contents."""

from __future__ import annotations

import os
import shutil
import signal
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import simulate
from localcluster.controlplane import ControlPlane, SchedulerSpec
from localcluster.processes import free_port, wait_until
from localcluster.realnode import RealNode
from localcluster.snapshots import install_snapshot_crds
from localcluster.stork import Stork, console_script
from storkcore.kube import Kube


@dataclass
class NodeSpec:
    name: str
    zone: str = ""
    region: str = ""
    rack: str = ""
    longhorn: bool = True

    def labels(self) -> dict[str, str]:
        found = {}
        if self.zone:
            found["topology.kubernetes.io/zone"] = self.zone
        if self.region:
            found["topology.kubernetes.io/region"] = self.region
        if self.rack:
            found["stork.libopenstorage.org/rack"] = self.rack
        return found


def six_nodes() -> list[NodeSpec]:
    """The playground's cluster: 6 nodes in 2 zones and 3 racks."""
    return [NodeSpec(f"node-{i}", zone=f"zone-{'ab'[i // 3]}", rack=f"rack-{i % 3}") for i in range(6)]


@dataclass
class LocalCluster:
    control_plane: ControlPlane
    storks: list[Stork] = field(default_factory=list)
    keep_workdir: bool = False
    real_node: RealNode | None = None

    @classmethod
    def create(cls, workdir: Path | None = None) -> LocalCluster:
        return cls(ControlPlane.create(workdir))

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def kube(self) -> Kube:
        return self.control_plane.kube()

    def start(self, with_longhorn: bool = True, with_snapshot_crds: bool = True) -> None:
        """The control plane and default-scheduler, Longhorn's CRDs, and the CSI snapshot CRDs
        with stork's own (without them: an install whose CRDs come later)."""
        try:
            self.control_plane.start()
            self.control_plane.start_scheduler(SchedulerSpec(name="default-scheduler", profiles=["default-scheduler"]))
            if with_longhorn:
                simulate.install_longhorn_crds(self.kube())
            if with_snapshot_crds:
                install_snapshot_crds(self.kube())
        except BaseException:
            self.stop()
            raise

    def add_stork(self, driver: str, driver_args: Iterable[str] = (), **kwargs) -> Stork:
        stork = Stork(self.control_plane, driver, list(driver_args), **kwargs)
        self.storks.append(stork)
        stork.start()
        return stork

    def start_controller(self, name: str, driver: str, args: Iterable[str] = (), ready_timeout: float = 60) -> str:
        """A `stork-controller` replica; returns the base URL of its health and metrics port."""
        port = free_port()
        self.control_plane.procs.start(
            name,
            [
                console_script("stork-controller"),
                "--driver",
                driver,
                "--kubeconfig",
                str(self.kubeconfig),
                "--bind",
                f"127.0.0.1:{port}",
                *args,
            ],
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: self._answers(name, base + "/readyz"), ready_timeout, name)
        return base

    def stop_process(self, name: str) -> None:
        self.control_plane.procs.stop(name)

    def kill_process(self, name: str) -> None:
        """SIGKILL, as a crash or an OOM kill: no clean-up runs."""
        proc = self.control_plane.procs.running[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.control_plane.procs.stop(name)

    def _answers(self, process: str, url: str) -> bool:
        self.control_plane.procs.check_alive(process)
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200

    def add_nodes(self, nodes: Iterable[NodeSpec], progress: Callable[[int, int], None] | None = None) -> None:
        """Node objects (and Longhorn nodes); `progress` hears (done, total) after each."""
        kube = self.kube()
        nodes = list(nodes)
        for i, node in enumerate(nodes):
            simulate.add_node(kube, node.name, node.labels(), internal_ip=f"10.1.0.{i + 1}")
            if node.longhorn:
                simulate.add_longhorn_node(kube, node.name, zone=node.zone, region=node.region)
            if progress is not None:
                progress(i + 1, len(nodes))

    def add_real_node(self, labels: dict[str, str] | None = None) -> RealNode:
        """containerd and a kubelet: a node `localhost` that runs real (hostNetwork) pods."""
        self.real_node = RealNode(self.control_plane)
        self.real_node.start(labels)
        return self.real_node

    def stop(self, report: Callable[[str], None] = lambda _: None) -> None:
        """Stop everything; `report` hears each step first (the playground prints them)."""
        for stork in self.storks:
            report(f"stopping {stork.name}: extender, webhook, scheduler ...")
            stork.stop()
        if self.real_node is not None:
            report("stopping the real node: its pods, the kubelet, containerd, mounts ...")
            self.real_node.stop()  # before the apiserver: the kubelet must go first
        report("stopping the control plane: controllers, schedulers, kube-apiserver, etcd ...")
        self.control_plane.stop()
        if not self.keep_workdir:
            shutil.rmtree(self.control_plane.workdir, ignore_errors=True)

    def log(self, process: str) -> str:
        path = self.control_plane.procs.logs / f"{process}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        simulate.ensure_namespace(self.kube(), name, labels)
