"""Commands in a pod's container through the pods/exec API (the official client's websocket).

`PodExec` needs an ApiClient of its own: the client's `stream()` swaps the ApiClient's
transport for the duration of the call, so sharing one with other threads would send their
requests over a websocket.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kubernetes import client
from kubernetes.stream import stream

log = logging.getLogger(__name__)


class PodGone(Exception):
    """The pod (or its container) no longer exists: nothing can run there."""


class ExecUnavailable(Exception):
    """The exec could not be started (connection trouble, a pod not yet running): retry."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None: ended by the deadline
    output: str  # stdout and stderr, the tail

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


class RunningExec(Protocol):
    def finished(self) -> ExecResult | None:
        """The result once the command has ended, else None (never blocks long)."""

    def close(self) -> None: ...


class Executor(Protocol):
    def start(self, namespace: str, pod: str, container: str, argv: Sequence[str]) -> RunningExec:
        """Start a command; raises PodGone or ExecUnavailable."""


def run_to_end(
    executor: Executor,
    namespace: str,
    pod: str,
    container: str,
    argv: Sequence[str],
    timeout: float,
    clock=time.monotonic,
    sleep=time.sleep,
) -> ExecResult:
    """Run a command until it ends or `timeout` passes; connection errors are retried within it."""
    deadline = clock() + timeout
    while True:
        try:
            running = executor.start(namespace, pod, container, argv)
            break
        except ExecUnavailable as err:
            if clock() + 0.5 >= deadline:
                return ExecResult(None, f"could not start: {err}")
            sleep(0.5)
    try:
        while clock() < deadline:
            result = running.finished()
            if result is not None:
                return result
            sleep(0.05)
        return ExecResult(None, "")
    finally:
        running.close()


class WebsocketExec:
    """One command over a websocket, read in the background until it ends."""

    def __init__(self, ws) -> None:
        self._ws = ws
        self._output: list[str] = []
        self._result: ExecResult | None = None
        self._done = threading.Event()
        threading.Thread(target=self._pump, name="exec", daemon=True).start()

    def _pump(self) -> None:
        try:
            while self._ws.is_open():
                self._ws.update(timeout=1)
                self._collect_output()
            self._collect_output()  # what arrived with the close
            code = self._exit_code()
        except Exception as err:  # the connection broke: the command's fate is unknown
            self._output.append(f"[stream broke: {err}]")
            code = None
        self._result = ExecResult(code if code is not None else 255, "".join(self._output)[-2000:])
        self._done.set()

    def _collect_output(self) -> None:
        for channel in (1, 2):  # stdout, stderr
            if self._ws.peek_channel(channel, timeout=0):
                self._output.append(self._ws.read_channel(channel))
                del self._output[:-50]

    def _exit_code(self) -> int | None:
        try:
            return int(self._ws.returncode)
        except (TypeError, ValueError, KeyError, IndexError):
            return None

    def finished(self) -> ExecResult | None:
        return self._result if self._done.wait(0.05) else None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed
            self._ws.close()


class KubePodExec:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._lock = threading.Lock()  # stream() patches the ApiClient while it connects

    def start(self, namespace: str, pod: str, container: str, argv: Sequence[str]) -> RunningExec:
        try:
            with self._lock:
                ws = stream(
                    self._core.connect_get_namespaced_pod_exec,
                    pod,
                    namespace,
                    command=list(argv),
                    container=container,
                    stdin=False,
                    stdout=True,
                    stderr=True,
                    tty=False,
                    _preload_content=False,
                    _request_timeout=10,
                )
        except client.ApiException as err:
            if err.status == 404:
                raise PodGone(f"{namespace}/{pod}") from err
            raise ExecUnavailable(f"{err.status}: {str(err.body or err.reason)[:200]}") from err
        except Exception as err:  # handshake refused (404 is reported this way too), connection reset
            message = str(err)
            if "404" in message or "not found" in message.lower():
                raise PodGone(f"{namespace}/{pod}") from err
            raise ExecUnavailable(message[:200]) from err
        return WebsocketExec(ws)
