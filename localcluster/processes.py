"""Child processes that are always torn down: by handle, or by PID file after a crash."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PID_FILE = "pids.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def outward_address() -> str:
    """This machine's first IPv4 address outside loopback: one an Endpoints object may name (the
    API refuses loopback endpoints) and kube-apiserver can still call."""
    found = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    for line in found.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    raise RuntimeError(f"no IPv4 address outside loopback on this machine (ip addr: {found.stderr.strip()})")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as err:  # not up yet
            last = err
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s" + (f": {last}" if last else ""))


class Processes:
    """Starts named processes in their own sessions, logs to files, records PIDs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: we stop children too
            cwd=self.workdir,
        )
        log.close()
        self.running[name] = proc
        self._record()
        return proc

    def check_alive(self, name: str) -> None:
        proc = self.running[name]
        if proc.poll() is not None:
            tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self, name: str, timeout: float = 10.0) -> None:
        proc = self.running.pop(name, None)
        if proc is not None:
            stop_group(proc.pid, timeout)
            proc.wait()
        self._record()

    def stop_all(self, timeout: float = 15.0) -> None:
        """Everything at once (SIGTERM to each group), then SIGKILL what outlives the timeout."""
        procs = list(self.running.values())
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            stop_group(proc.pid, max(0.1, deadline - time.monotonic()))
            proc.wait()
        self.running.clear()
        self._record()

    def _record(self) -> None:
        pids = {
            name: {"pid": proc.pid, "program": str(proc.args[0])}
            for name, proc in self.running.items()
            if proc.poll() is None
        }
        if self.workdir.exists():  # a second stop after clean-up has nothing to record
            (self.workdir / PID_FILE).write_text(json.dumps(pids))


def stop_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop_recorded(workdir: Path) -> list[str]:
    """Stop what a crashed run left (from its PID file); returns the names stopped."""
    pid_file = workdir / PID_FILE
    if not pid_file.exists():
        return []
    stopped = []
    for name, entry in json.loads(pid_file.read_text()).items():
        if _runs(entry["pid"], entry["program"]):
            stop_group(entry["pid"])
            stopped.append(name)
    pid_file.unlink()
    return stopped


def _runs(pid: int, program: str) -> bool:
    """The PID is alive and still runs the program we started (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and program.encode() in cmdline[:2]
