"""Saying how far a long step is: a line that counts seconds while the step runs, and a bar
with the time left where the work is countable (nodes being created). On a terminal the line
is redrawn in place; in a log (not a terminal) it is written at the start, every tenth of a
countable job, and at the end, so a log stays short."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

BAR_WIDTH = 30


def bar(done: int, total: int, elapsed: float) -> str:
    """`[#########.....]  30/100  about 12 s left`."""
    share = done / total if total else 1.0
    filled = round(BAR_WIDTH * share)
    left = f"about {_seconds(elapsed / done * (total - done))} left" if 0 < done < total else ""
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}  {left}".rstrip()


def _seconds(value: float) -> str:
    value = max(0, round(value))
    return f"{value // 60} min {value % 60:02d} s" if value >= 60 else f"{value} s"


class Progress:
    """One step's line. `count(done, total)` makes it a bar."""

    def __init__(self, message: str, out: TextIO | None = None) -> None:
        self.message = message
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.started = time.monotonic()
        self._counted: tuple[int, int] | None = None
        self._last_tenth = -1
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        if self._counted is not None:
            return f"{self.message} {bar(*self._counted, self.elapsed())}"
        return f"{self.message} ... {_seconds(self.elapsed())}"

    def count(self, done: int, total: int) -> None:
        with self._lock:
            self._counted = (done, total)
            tenth = done * 10 // total if total else 10
            if self.tty:
                self._draw()
            elif tenth != self._last_tenth:
                self._last_tenth = tenth
                self.out.write(self.line() + "\n")
                self.out.flush()

    def _draw(self) -> None:
        self.out.write("\r\033[K" + self.line())
        self.out.flush()

    def tick(self) -> None:
        with self._lock:
            if self.tty:
                self._draw()

    def finish(self, ok: bool) -> None:
        with self._lock:
            end = f"{self.message} {'done' if ok else 'failed'} ({_seconds(self.elapsed())})"
            self.out.write(("\r\033[K" if self.tty else "") + end + "\n")
            self.out.flush()


@contextmanager
def step(message: str, out: TextIO | None = None) -> Iterator[Progress]:
    """Runs a step with its line: seconds counting (or a bar) while it runs, done and its time after."""
    progress = Progress(message, out)
    if not progress.tty:
        progress.out.write(f"{message} ...\n")
        progress.out.flush()
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(1.0):
            progress.tick()

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    ok = False
    try:
        yield progress
        ok = True
    finally:
        stop.set()
        thread.join()
        progress.finish(ok)
