"""The Dockerfile and `scripts/build-image.sh` describe the same image: same Debian release
and packages, same installed package (so the same console scripts), same environment, user,
working folder, entry point and command. The e2e (tests/e2e/test_image.py) runs the built one."""

from __future__ import annotations

import configparser
import json
import re
import tarfile

from localcluster.binaries import REPO
from localcluster.images import normalized, write_oci_archive
from localcluster.storkimage import CONSOLE_SCRIPTS, IMAGE_CONFIG, PACKAGES, SUITE


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, argument) pairs, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def last(instruction: str) -> str:
    return [arg for inst, arg in dockerfile() if inst == instruction][-1]


def test_same_debian_release_and_packages():
    assert last("FROM") == f"debian:{SUITE}-slim"
    (install,) = [arg for inst, arg in dockerfile() if inst == "RUN" and "apt-get install" in arg]
    assert set(PACKAGES) <= set(install.split())


def test_same_environment_user_folder_and_command():
    docker_env = dict(pair.split("=", 1) for inst, arg in dockerfile() if inst == "ENV" for pair in arg.split())
    image_env = dict(item.split("=", 1) for item in IMAGE_CONFIG["Env"])
    assert docker_env.items() <= image_env.items()
    assert last("USER") == IMAGE_CONFIG["User"]
    assert last("WORKDIR") == IMAGE_CONFIG["WorkingDir"]
    assert json.loads(last("ENTRYPOINT")) == IMAGE_CONFIG["Entrypoint"]
    assert json.loads(last("CMD")) == IMAGE_CONFIG["Cmd"]


def test_both_install_the_whole_project_so_every_console_script_works():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    scripts = {
        line.split("=")[0].strip() for line in setup["options.entry_points"]["console_scripts"].splitlines() if line
    }
    assert scripts == set(CONSOLE_SCRIPTS)  # what build-image.sh checks in the built root
    # The Dockerfile copies every package the scripts import from (a missing COPY would
    # install a script whose module is absent).
    packages = {line.strip().rstrip("*") for line in setup["options.packages.find"]["include"].splitlines() if line}
    copied = {m.group(1) for m in re.finditer(r"^COPY (\w+) ", (REPO / "Dockerfile").read_text(), re.M)}
    assert packages <= copied
    assert any(
        inst == "RUN" and "pip install" in arg and arg.split("pip install")[1].split("&&")[0].split()[-1] == "."
        for inst, arg in dockerfile()
    )


def test_the_oci_archive_is_an_image_layout_containerd_can_import(tmp_path):
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        (tmp_path / "hello").write_text("hi")
        tar.add(tmp_path / "hello", arcname="hello")
    archive = write_oci_archive(tmp_path / "image.tar", [("stork-py:0.1.0", IMAGE_CONFIG, layer.read_bytes())])
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        (entry,) = index["manifests"]
        assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/stork-py:0.1.0"
        manifest = json.load(tar.extractfile(f"blobs/sha256/{entry['digest'].split(':')[1]}"))
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
        assert config["config"] == IMAGE_CONFIG
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}


def test_image_names_are_stored_as_the_kubelet_asks_for_them():
    assert normalized("stork-py:0.1.0") == "docker.io/library/stork-py:0.1.0"
    assert normalized("someone/stork-py:1") == "docker.io/someone/stork-py:1"
    assert normalized("stork.local/busybox:1") == "stork.local/busybox:1"
    assert normalized("localhost:5000/stork-py:1") == "localhost:5000/stork-py:1"
