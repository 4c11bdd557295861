"""The cached Kubernetes build is found by its recipe: a build from an older recipe of
scripts/build-k8s.sh (without today's fixes) is never used."""

from __future__ import annotations

import subprocess

import pytest

from localcluster import binaries


def _fake_build(root, name: str) -> None:
    (root / name / "bin").mkdir(parents=True)
    for b in binaries.NEEDED:
        (root / name / "bin" / b).write_text("")
    (root / name / ".complete").write_text("")


def test_a_build_of_an_older_recipe_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("STORK_K8S_BIN_DIR", raising=False)
    root = tmp_path / "stork-py" / "kubernetes"
    _fake_build(root, "1.20.2-1")  # the old layout: the version only
    with pytest.raises(FileNotFoundError, match="this recipe"):
        binaries.kubernetes_bin_dir(build=False)
    _fake_build(root, f"1.20.2-1-{binaries.recipe()}")
    assert binaries.kubernetes_bin_dir(build=False) == root / f"1.20.2-1-{binaries.recipe()}" / "bin"


def test_the_script_and_the_lookup_agree_on_the_recipe():
    shell = subprocess.run(["bash", str(binaries.BUILD_SCRIPT), "--recipe"], capture_output=True, text=True, check=True)
    assert shell.stdout.strip() == binaries.recipe()
