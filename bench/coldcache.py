"""Benchmark: the extender's verbs and their parts in-process, with warm and with cold CPU caches.

A loop that calls a function back to back measures it with everything it touches
in the CPU's caches. In `bench/scheduler.py` the two cores are busy with the
apiserver, etcd and kube-scheduler between two calls, so every call starts cold:
there parsing a request costs 4-7 times what a warm loop says, a whole call about
twice (bench/README.md, "Where the extender's CPU goes"). This script times each part
both ways: "cold" overwrites a buffer larger than the CPU's caches before each
call. Nodes in 3 zones x 10 racks, a pod with 3 volumes of 3 replicas (as
bench/extender.py), 420 node names per request (what kube-scheduler sends of
1,000 nodes). Median and p90 of the thread's CPU time per call.

    python bench/coldcache.py [--nodes 1000] [--names 420] [--calls 300] [--flush-mb 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, print_table


def thread_cpu_per_call(call: Callable[[], object], calls: int, flush: Callable[[], None] | None) -> list[float]:
    call()
    samples = []
    for _ in range(calls):
        if flush is not None:
            flush()
        started = time.thread_time()
        call()
        samples.append(time.thread_time() - started)
    return samples


def cache_flusher(megabytes: int) -> Callable[[], None]:
    """Writes one byte per 64-byte line of a buffer larger than the caches."""
    buffer = bytearray(megabytes * 1024 * 1024)
    ones = b"\x01" * (len(buffer) // 64)

    def flush() -> None:
        buffer[::64] = ones

    return flush


def parts(node_count: int, name_count: int) -> dict[str, Callable[[], object]]:
    from bench.extender import build_world, request_bodies
    from extender.app import create_app
    from extender.protocol import encoded_priority_list, filter_result, parse_args
    from extender.scoring import score_names
    from storkcore.events import EventRecorder

    world, names = build_world(node_count)
    world.driver.start()
    app = create_app(world.driver, EventRecorder(None, "bench"))
    extender = app.extensions["stork-extender"]
    verbs = app.wsgi_app.routes  # type: ignore[attr-defined]  # storkcore.web.DirectRoutes
    body = request_bodies(world, names[:name_count])["names"]
    args = parse_args(body)
    storage = extender.assess(args.pod)
    index_by_id = extender.driver.index().by_id
    table = extender.resolver.table
    scores, _ = score_names(args.pod, storage, index_by_id, args.node_names, table)
    data_nodes = {n for v in storage.volumes for n in v.data_nodes}
    return {
        "/filter (whole verb)": lambda: verbs["/filter"](body),
        "/prioritize (whole verb)": lambda: verbs["/prioritize"](body),
        "parse_args": lambda: parse_args(body),
        "assess (pod cached)": lambda: extender.assess(args.pod),
        "node table: reasons": lambda: table.static_reasons(args.node_names),
        "node table: places": lambda: table.places(args.node_names, data_nodes),
        "score_names": lambda: score_names(args.pod, storage, index_by_id, args.node_names, table),
        "filter_result (encode)": lambda: filter_result(args, list(range(len(args.node_names))), {}),
        "encoded_priority_list": lambda: encoded_priority_list(args.node_names, scores),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--names", type=int, default=420)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--flush-mb", type=int, default=64, help="more than the CPU's last-level cache")
    args = parser.parse_args()
    flush = cache_flusher(args.flush_mb)
    rows = []
    for name, call in parts(args.nodes, args.names).items():
        warm = thread_cpu_per_call(call, args.calls, None)
        cold = thread_cpu_per_call(call, args.calls, flush)
        row = [name]
        for samples in (warm, cold):
            row += [f"{percentile(samples, 50) * 1e6:.0f}", f"{percentile(samples, 90) * 1e6:.0f}"]
        row.append(f"{percentile(cold, 50) / max(percentile(warm, 50), 1e-9):.1f}x")
        rows.append(row)
    print(f"thread CPU per call (us), {args.nodes} nodes, {args.names} names per request, {args.calls} calls each")
    print_table(["part", "warm p50", "warm p90", "cold p50", "cold p90", "cold/warm"], rows)


if __name__ == "__main__":
    main()
