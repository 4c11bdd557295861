"""Benchmark: what the extender's metrics cost per request, kept in the process (prometheus_client's
default) or in files every worker process shares (its multiprocess mode, which the webhook's
gunicorn workers use and granian's workers use so a scrape during a certificate renewal's
worker overlap sees one set of counters).

Per request the extender counts it (`stork_extender_requests_total{verb,code,mode}`) and
observes its latency (`stork_extender_request_duration_seconds{verb}`): exactly those two calls
on the real ExtenderMetrics are timed here, in a fresh process per mode (the mode is process
wide), alternating rounds in one run.

    python bench/metric_values.py [--requests 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table

MODES = ("private", "shared")


def measure(mode: str, requests: int) -> float:
    """Seconds per request for the two metric calls, in this process."""
    if mode == "shared":
        from storkcore.processmetrics import use_shared_values

        use_shared_values()
    from prometheus_client import CollectorRegistry

    from extender.metrics import ExtenderMetrics

    metrics = ExtenderMetrics(CollectorRegistry())
    verbs = ("filter", "prioritize")
    started = time.perf_counter()
    for i in range(requests):
        verb = verbs[i & 1]
        metrics.requests.labels(verb, "200", "names").inc()
        metrics.latency.labels(verb).observe(0.0004)
    return (time.perf_counter() - started) / requests


def run_mode(mode: str, requests: int) -> float:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="stork-metrics-bench-") as folder:
        if mode == "shared":
            env["PROMETHEUS_MULTIPROC_DIR"] = folder
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        out = subprocess.run(
            [sys.executable, __file__, "--one", mode, "--requests", str(requests)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return json.loads(out)["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps({"seconds": measure(args.one, args.requests)}))
        return
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            samples[mode].append(run_mode(mode, args.requests))
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    rows = [[mode, f"{medians[mode] * 1e6:.2f}", " ".join(f"{v * 1e6:.2f}" for v in samples[mode])] for mode in MODES]
    print(f"{args.requests} requests x {args.rounds} rounds, two metric calls per request")
    print_table(["values", "us/request (median)", "rounds"], rows)
    print(f"ratio shared / private: {medians['shared'] / medians['private']:.2f}")


if __name__ == "__main__":
    main()
