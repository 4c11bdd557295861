"""The stork-py container image, built without a container engine.

`scripts/build-image.sh` runs this: `mmdebstrap` makes a minimal Debian root from Debian's
packages (python3, pip, CA certificates), the project's wheel and its dependencies' wheels
(built and downloaded here beforehand) are installed into it offline, pip is purged again,
and the root becomes
the single layer of an OCI image archive that `ctr images import` (or `skopeo`, or a
registry push with any OCI tool) takes. The image config says what the Dockerfile says
(`IMAGE_CONFIG`; `tests/unit/test_image.py` holds them to the same entry points).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from localcluster.binaries import REPO
from localcluster.images import write_oci_archive

IMAGE = "stork-py:0.1.0"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "ca-certificates")
# As the Dockerfile: no bytecode written at run time (read-only root), unbuffered logs,
# non-root, /tmp as the working folder (an emptyDir in the manifests).
IMAGE_CONFIG = {
    "Env": [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
    ],
    "User": "65532:65532",
    "WorkingDir": "/tmp",
    "Entrypoint": [],
    "Cmd": ["stork-extender", "--help"],
}
CONSOLE_SCRIPTS = ("stork-extender", "stork-webhook", "stork-controller", "stork-certs", "storkctl", "stork-playground")


def say(message: str) -> None:
    print(f"build-image: {message}", file=sys.stderr, flush=True)


def ensure_mmdebstrap() -> None:
    if shutil.which("mmdebstrap"):
        return
    say("installing mmdebstrap (Debian package)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "mmdebstrap"]
    if subprocess.run(install, capture_output=True, env=env).returncode:  # package lists not fetched yet
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env)
        subprocess.run(install, check=True, capture_output=True, env=env)


def build_wheels(folder: Path) -> None:
    """stork-py's wheel and every dependency's, for the image's Python (3.11, like this host's)."""
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder), str(REPO)],
        check=True,
    )


def build_rootfs(wheels: Path, rootfs: Path) -> None:
    # The hooks run on this host with the new root as $1; pip inside it reads only our wheels.
    install = (
        'chroot "$1" env -i PATH=/usr/bin:/bin python3 -m pip install --quiet --no-index --no-cache-dir '
        "--break-system-packages --find-links /tmp/wheels stork-py"
    )
    # pip was only the installer: purge it (and what it alone pulled in), docs and caches.
    purge = 'chroot "$1" dpkg --purge python3-pip python3-setuptools python3-wheel'
    clean = (
        'rm -rf "$1"/tmp/wheels "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/* '
        '"$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/*'
    )
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=essential",
            f"--include={','.join(PACKAGES)}",
            f'--customize-hook=mkdir -p "$1"/tmp/wheels && cp {wheels}/*.whl "$1"/tmp/wheels/',
            f"--customize-hook={install}",
            f"--customize-hook={purge}",
            f"--customize-hook={clean}",
            SUITE,
            str(rootfs),
        ],
        check=True,
    )


def missing_scripts(rootfs: Path) -> list[str]:
    with tarfile.open(rootfs) as tar:
        names = {name.lstrip("./") for name in tar.getnames()}
    return [s for s in CONSOLE_SCRIPTS if f"usr/local/bin/{s}" not in names]


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    ensure_mmdebstrap()
    say("building wheels")
    build_wheels(out / "wheels")
    say(f"building a Debian {SUITE} root with {', '.join(PACKAGES)} and stork-py")
    rootfs = out / "rootfs.tar"
    build_rootfs(out / "wheels", rootfs)
    missing = missing_scripts(rootfs)
    if missing:
        raise RuntimeError(f"the image lacks {', '.join(missing)}")
    say("writing the OCI archive")
    archive = write_oci_archive(out / "stork-py.oci.tar", [(IMAGE, IMAGE_CONFIG, rootfs.read_bytes())])
    rootfs.unlink()
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the stork-py image as an OCI archive, without a daemon.")
    parser.add_argument("--out", default=str(REPO / "build" / "image"), help="folder for the archive")
    args = parser.parse_args()
    print(build(Path(args.out)))


if __name__ == "__main__":
    main()
