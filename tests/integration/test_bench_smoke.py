"""Every script in bench/ runs once at a tiny size and prints its table.

The project's performance claims rest on these scripts; nothing else runs them, so a refactor
elsewhere could break one unnoticed (bench/soak.py once crashed at start for weeks). These runs
measure nothing: they check that each script still starts, finishes and prints the header of
its table. Scripts that start the local control plane (or need the Go toolchain the Kubernetes
build installs) are marked e2e and run with the end-to-end tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLUSTER = pytest.mark.e2e

# script -> (tiny arguments, words of the table header it must print, seconds allowed)
RUNS = {
    "coldcache": (["--nodes", "20", "--names", "10", "--calls", "5", "--flush-mb", "1"], "score_names", 120),
    "extender": (["--requests", "5", "--nodes", "20"], "p50 ratio", 120),
    "extender-pxd": (["--requests", "5", "--nodes", "20", "--driver", "pxd"], "storage API calls answered", 120),
    "extender-linstor": (["--requests", "5", "--nodes", "20", "--driver", "linstor"], "p50 ratio", 120),
    "servers": (["--requests", "5", "--nodes", "20"], "granian", 300),
    "webhook": (["--seconds", "0.3", "--concurrency", "1", "2"], "floor req/s", 120),
    "metric_values": (["--requests", "1000", "--rounds", "1"], "us/request (median)", 120),
}
CLUSTER_RUNS = {
    "http_versions": (["--rounds", "1", "--requests", "10"], "client cpu", 300),
    "memory": (["--scale", "0.002", "--settle", "1"], "resident memory (MB)", 600),
    "scheduler": (["--nodes", "8", "--pods", "4", "--rounds", "1"], "ratio of medians (with extender / without)", 900),
    "soak": (["--minutes", "0.25", "--warmup", "0.2"], "cache lag p50 / p99 s (n)", 600),
}


def run(name: str, args: list[str], timeout: float) -> str:
    script = REPO / "bench" / f"{name.split('-')[0]}.py"
    done = subprocess.run(
        [sys.executable, str(script), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{script.name} {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def test_every_bench_script_has_a_smoke_run():
    scripts = {p.stem for p in (REPO / "bench").glob("*.py")} - {"__init__", "common"}
    covered = {name.split("-")[0] for name in [*RUNS, *CLUSTER_RUNS]}
    assert scripts == covered


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_bench_script_runs_at_a_tiny_size(name):
    args, header, timeout = RUNS[name]
    assert header in run(name, args, timeout)


@CLUSTER
@pytest.mark.parametrize("name", sorted(CLUSTER_RUNS))
def test_a_bench_script_on_the_local_cluster_runs_at_a_tiny_size(name):
    args, header, timeout = CLUSTER_RUNS[name]
    assert header in run(name, args, timeout)
