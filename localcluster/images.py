"""Container images built here, since no registry can be reached: an OCI archive holding a
busybox image and the pod sandbox ("pause") image, both one layer of /bin/busybox with its
applets, /etc/passwd and /tmp. `ctr images import` loads it into containerd."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX_IMAGE = "stork.local/busybox:1"
PAUSE_IMAGE = "stork.local/pause:1"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def _busybox() -> str:
    found = shutil.which("busybox") or "/bin/busybox"
    if not Path(found).exists():
        raise FileNotFoundError("busybox is not installed (Debian package busybox-static)")
    return found


def _add(
    tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def busybox_layer() -> bytes:
    binary = _busybox()
    applets = subprocess.run([binary, "--list"], check=True, capture_output=True, text=True).stdout.split()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for folder, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("data", 0o777)):
            _add(tar, folder, kind=tarfile.DIRTYPE, mode=mode)
        _add(tar, "bin/busybox", Path(binary).read_bytes(), mode=0o755)
        for applet in sorted(set(applets) - {"busybox"}):
            _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        _add(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _add(tar, "etc/group", b"root:x:0:\nnobody:x:65534:\n")
    return out.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def oci_archive(path: Path) -> Path:
    """Write an OCI image layout tarball with both images; returns its path."""
    layer = busybox_layer()
    return write_oci_archive(
        path,
        [
            (BUSYBOX_IMAGE, {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}, layer),
            (PAUSE_IMAGE, {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sleep", "2147483647"]}, layer),
        ],
    )


def normalized(name: str) -> str:
    """The full reference the kubelet asks containerd for: `stork-py:0.1.0` is
    `docker.io/library/stork-py:0.1.0` (a name without a registry host is Docker Hub's)."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if rest else f"docker.io/library/{name}"


def write_oci_archive(path: Path, images: list[tuple[str, dict, bytes]]) -> Path:
    """An OCI image layout tarball of (name, config, single uncompressed layer) images, as
    `ctr images import` reads it; a layer shared by several images is stored once."""
    blobs: dict[str, bytes] = {}
    manifests = []
    for name, config, layer in images:
        layer_desc = {"mediaType": LAYER_TYPE, **_blob(blobs, layer)}
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        config_desc = {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(blobs, json.dumps(image_config).encode()),
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **_blob(blobs, json.dumps(manifest).encode()),
                "annotations": {
                    "io.containerd.image.name": normalized(name),
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        )
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add(tar, "index.json", json.dumps(index).encode())
        _add(tar, "blobs", kind=tarfile.DIRTYPE, mode=0o755)
        _add(tar, "blobs/sha256", kind=tarfile.DIRTYPE, mode=0o755)
        for digest, data in blobs.items():
            _add(tar, f"blobs/sha256/{digest.split(':')[1]}", data)
    return path
