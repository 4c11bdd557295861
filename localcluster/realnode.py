"""One real node beside the simulated ones: containerd and a kubelet that run real pods.

Everything stays on loopback and inside the cluster's folder: containerd's root, state and
socket; a CNI folder with only a loopback network (so only `hostNetwork: true` pods start);
the kubelet's root. The node registers as `localhost` and carries the taint
`stork.local/real-node=true:NoSchedule`, so only pods that ask for it run here. Images come
from `localcluster.images` (no registry is reachable); pods use `imagePullPolicy: Never`.

Stopping leaves nothing behind: the kubelet, every container and shim of our containerd,
containerd, every mount under the folder, and the pods' cgroups.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcluster import simulate
from localcluster.controlplane import ControlPlane
from localcluster.images import PAUSE_IMAGE, oci_archive
from localcluster.processes import free_port, wait_until
from storkcore.kube import NODES, STORAGE_CLASSES

NODE_NAME = "localhost"
TAINT = {"key": "stork.local/real-node", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": "stork.local/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
CGROUP_ROOT = Path("/sys/fs/cgroup")
PACKAGES = ("containerd", "runc", "busybox-static", "containernetworking-plugins")


def ensure_packages() -> None:
    missing = [p for p in PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-qq", *missing], capture_output=True, env=env).returncode:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, capture_output=True, env=env)


@dataclass
class RealNode:
    control_plane: ControlPlane

    @property
    def folder(self) -> Path:
        return self.control_plane.workdir / "realnode"

    @property
    def socket(self) -> Path:
        return socket_path(self.folder)

    def start(self, labels: dict[str, str] | None = None) -> None:
        ensure_packages()
        try:
            self._start_containerd()
            self._import_images()
            self._start_kubelet()
            self._wait_ready(labels or {})
        except BaseException:
            self.stop()
            raise

    # -- containerd ----------------------------------------------------------------

    def _start_containerd(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        cni = self.folder / "cni"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-loopback.conflist").write_text(
            json.dumps({"cniVersion": "0.4.0", "name": "loopback", "plugins": [{"type": "loopback"}]})
        )
        config = self.folder / "containerd.toml"
        config.write_text(
            f"""version = 2
root = "{self.folder / "containerd-root"}"
state = "{self.folder / "containerd-state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Without it runc fails to raise oom_score_adj in this sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"""
        )
        self.control_plane.procs.start("containerd", ["containerd", "--config", str(config)])
        wait_until(lambda: self._ctr("version").returncode == 0, 30, "containerd")

    def _ctr(self, *args: str) -> subprocess.CompletedProcess:
        self.control_plane.procs.check_alive("containerd")
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args], capture_output=True, text=True
        )

    def _import_images(self) -> None:
        self.import_image(oci_archive(self.folder / "images.tar"))

    def import_image(self, archive: Path) -> None:
        """Load an OCI archive into this node's containerd (what a pull would do)."""
        imported = self._ctr("images", "import", str(archive))
        if imported.returncode != 0:
            raise RuntimeError(f"image import failed: {imported.stderr}")

    def task_pids(self) -> dict[str, int]:
        """Running containers' first process: container id -> pid (`ctr tasks ls`)."""
        listing = self._ctr("tasks", "ls").stdout.splitlines()[1:]
        return {fields[0]: int(fields[1]) for fields in map(str.split, listing) if fields[-1] == "RUNNING"}

    # -- kubelet ---------------------------------------------------------------------

    def _make_cgroup_root(self) -> None:
        """The kubelet wants its cgroup root to exist in every hierarchy (cgroup v1)."""
        name = cgroup_name(self.folder)
        for hierarchy in (p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()):
            ours = hierarchy / name
            ours.mkdir(exist_ok=True)
            for key in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset starts empty: inherit
                if (hierarchy / key).exists():
                    (ours / key).write_text((hierarchy / key).read_text())

    def _start_kubelet(self) -> None:
        self._make_cgroup_root()
        self.port, self.healthz = free_port(), free_port()
        config = self.folder / "kubelet.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": "127.0.0.1",
                    "port": self.port,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": self.healthz,
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": "/" + cgroup_name(self.folder),
                    "failSwapOn": False,
                    # This local node only: the apiserver reaches it on loopback.
                    "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
                    "authorization": {"mode": "AlwaysAllow"},
                    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "registerWithTaints": [TAINT],
                }
            )
        )
        self.control_plane.procs.start(
            "kubelet",
            [
                str(self.control_plane.bin_dir / "kubelet"),
                "--kubeconfig",
                str(self.control_plane.kubeconfig),
                "--config",
                str(config),
                "--container-runtime",
                "remote",
                "--container-runtime-endpoint",
                f"unix://{self.socket}",
                "--hostname-override",
                NODE_NAME,
                "--root-dir",
                str(runtime_dir(self.folder) / "kubelet"),
                "--cert-dir",
                str(self.folder / "kubelet-pki"),
                "--pod-infra-container-image",
                PAUSE_IMAGE,
                "--v",
                "1",
            ],
        )

    def _wait_ready(self, labels: dict[str, str]) -> None:
        kube = self.control_plane.kube()

        def ready() -> bool:
            self.control_plane.procs.check_alive("kubelet")
            node = kube.get(NODES, "", NODE_NAME)
            return bool(node) and any(
                c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
            )

        wait_until(ready, 90, "the real node", interval=0.5)
        # Registered with the not-ready taint, which nobody removes without the node lifecycle
        # controller: keep only ours.
        kube.patch(NODES, "", NODE_NAME, {"metadata": {"labels": labels}, "spec": {"taints": [TAINT]}})
        with urllib.request.urlopen(f"http://127.0.0.1:{self.healthz}/healthz", timeout=5) as resp:
            assert resp.status == 200

    # -- teardown --------------------------------------------------------------------

    def stop(self) -> None:
        procs = self.control_plane.procs
        if "kubelet" in procs.running:
            procs.stop("kubelet")
        kill_containers(self.folder)
        if "containerd" in procs.running:
            procs.stop("containerd")
        clean(self.folder)


def runtime_dir(folder: Path) -> Path:
    """Where the node's unix sockets live (containerd's, and the kubelet's under its root): a
    socket path must be short (104 bytes) and the folder may not be, so it is in /tmp, named
    after the folder (a crashed run's clean-up finds it)."""
    return Path("/tmp/stork-rn-" + hashlib.sha256(str(folder).encode()).hexdigest()[:12])


def socket_path(folder: Path) -> Path:
    return runtime_dir(folder) / "containerd.sock"


def cgroup_name(folder: Path) -> str:
    """The kubelet's cgroup root: pods' cgroups live under it in every hierarchy, so clean-up
    touches our pods only, never those of another kubelet on the machine."""
    return "stork-" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]


def clean(folder: Path) -> None:
    """Whatever a real node in `folder` left: containers, shims, mounts, cgroups, files."""
    kill_containers(folder)
    for place in (runtime_dir(folder), folder):
        _unmount_all(place)
    _remove_cgroups(folder)
    shutil.rmtree(runtime_dir(folder), ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def kill_containers(folder: Path) -> None:
    """Our shims (found by our socket) and every process in the pods' cgroups."""
    marker = str(socket_path(folder)).encode()
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (proc / "cmdline").read_bytes() and "containerd-shim" in (proc / "comm").read_text():
                pids.add(int(proc.name))
                continue
            if f"/{cgroup_name(folder)}/" in (proc / "cgroup").read_text():
                pids.add(int(proc.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all(not Path(f"/proc/{pid}").exists() for pid in pids), 15, "containers to exit")


def _mounts_under(prefix: str) -> list[str]:
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]


def _unmount_all(folder: Path) -> None:
    for _ in range(5):
        points = _mounts_under(str(folder))
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):  # deepest first
            subprocess.run(["umount", point], capture_output=True)
    for point in _mounts_under(str(folder)):  # still busy: detach lazily
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_cgroups(folder: Path) -> None:
    """The kubelet (cgroupfs driver) made our cgroup root in every hierarchy: remove it, leaves first."""
    for top in _our_cgroups(folder):
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def run_on_real_node(kube, namespace: str, name: str, claim: str, script: str) -> None:
    """A one-replica Deployment of busybox on the real node, with `claim` at /data."""
    run_app_on_real_node(kube, namespace, name, {claim: "/data"}, script)


def run_app_on_real_node(kube, namespace: str, name: str, mounts: dict[str, str], script: str) -> None:
    """A one-replica Deployment of busybox on the real node, each claim mounted at its path."""
    from localcluster.images import BUSYBOX_IMAGE

    template = simulate.pod_template(list(mounts))
    spec = template["spec"]
    spec.update(hostNetwork=True, tolerations=[TOLERATION])  # loopback-only CNI: host network
    spec["containers"][0].update(
        image=BUSYBOX_IMAGE,
        imagePullPolicy="Never",
        command=["/bin/sh", "-c", script],
        volumeMounts=[{"name": f"v{i}", "mountPath": path} for i, path in enumerate(mounts.values())],
    )
    template["metadata"]["labels"] = {"app": name}
    kube.create(
        simulate.DEPLOYMENTS,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
        },
    )


def local_volume_claim(kube, namespace: str, claim: str, folder: Path) -> None:
    """A local PersistentVolume in `folder` on the real node, bound to `claim`."""
    if not kube.get(STORAGE_CLASSES, "", "local"):
        simulate.storage_class(kube, "local", "kubernetes.io/no-provisioner", wait_for_consumer=True)
    folder.mkdir(parents=True, exist_ok=True)
    simulate.bound_claim(
        kube, namespace, claim, "local", {"local": {"path": str(folder)}}, simulate.hostname_affinity(NODE_NAME)
    )
    simulate.wait_bound_claim(kube, namespace, claim)


def _our_cgroups(folder: Path) -> list[Path]:
    return [p for p in CGROUP_ROOT.glob(f"*/{cgroup_name(folder)}") if p.is_dir()]


def leftovers(folder: Path) -> list[str]:
    """What a real node could leave behind: processes, mounts and cgroups (empty when clean)."""
    found = [f"folder {runtime_dir(folder)}"] if runtime_dir(folder).exists() else []
    marker = str(folder).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes():
                    found.append(f"process {proc.name}")
    found += [f"mount {point}" for place in (folder, runtime_dir(folder)) for point in _mounts_under(str(place))]
    found += [f"cgroup {p}" for p in _our_cgroups(folder)]
    return found
