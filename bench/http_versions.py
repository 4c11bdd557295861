"""Benchmark: HTTP/1.1 against HTTP/2 between a Go client and the extender under granian (TLS).

kube-scheduler's extender client is Go's net/http: over TLS it takes HTTP/2 when the server
offers it. bench/goclient (built here with the Go toolchain the Kubernetes build installed)
sends the same ExtenderArgs (420 of 1,000 names) one call at a time on a kept-alive
connection, forced to one version or the other, in alternating rounds against one granian
server that offers both (as bench/servers.py serves it). Prints the latencies, the client's
CPU per call (what kube-scheduler would spend) and the server's.

    python bench/http_versions.py [--rounds 3] [--requests 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, start_server, stop_server
from bench.scheduler import cpu_seconds
from bench.servers import certificates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    from bench.extender import build_world, request_bodies
    from tests.processes import free_port

    folder = Path(tempfile.mkdtemp(prefix="bench-http-"))
    client = folder / "goclient"
    subprocess.run(["go", "build", "-o", str(client), "."], cwd=Path(__file__).parent / "goclient", check=True)
    ca, cert, key = certificates(folder)
    world, names = build_world(1000)
    (folder / "body.json").write_bytes(request_bodies(world, names[:420])["names"])
    os.environ["BENCH_NODES"] = "1000"
    port = free_port()
    command = ["bench/servers.py", "--serve", "granian", "--app", "extender", "--port", str(port)]
    command += ["--certfile", cert, "--keyfile", key]
    server = start_server(command, f"https://127.0.0.1:{port}/livez", verify=ca)
    rows = []
    try:
        for round_number in range(args.rounds):
            for version in ("h1", "h2"):
                before = cpu_seconds(server.pid)
                argv = [str(client), f"https://127.0.0.1:{port}", ca, str(folder / "body.json"), version]
                out = subprocess.run([*argv, str(args.requests)], capture_output=True, text=True, check=True).stdout
                calls = 2 * (args.requests + 50)  # both verbs, with the client's warm-up calls
                server_ms = (cpu_seconds(server.pid) - before) * 1000 / calls
                for line in out.splitlines():
                    _, proto, verb, _, p50, _, p99, *_, client_ms, _ = line.split()
                    rows.append((round_number + 1, proto, verb, p50, p99, client_ms, f"{server_ms:.2f}"))
    finally:
        stop_server(server)
    print("ms per call; client cpu: the Go client's user + system; server cpu: both verbs' average")
    print_table(["round", "protocol", "verb", "p50", "p99", "client cpu", "server cpu"], rows)


if __name__ == "__main__":
    main()
