"""Rendering the kustomize overlays with the kubectl of our Kubernetes build."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

from localcluster.binaries import kubernetes_bin_dir

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["longhorn", "csi", "portworx", "linstor", "default-scheduler", "cert-manager"]


def kubectl() -> str:
    return str(kubernetes_bin_dir(build=False) / "kubectl")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(docs, *kinds: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in kinds]
