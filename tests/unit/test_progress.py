"""Long steps say how far they are: a bar with the time left for countable work, seconds for
the rest; in a log (not a terminal) a few lines, not one per item."""

from __future__ import annotations

import io

import pytest

from localcluster.progress import bar, step


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_how_far_and_about_how_long_is_left():
    assert bar(30, 100, elapsed=15.0) == "[#########.....................] 30/100  about 35 s left"
    assert bar(100, 100, elapsed=60.0) == "[##############################] 100/100"
    assert bar(1, 1000, elapsed=2.0).endswith("about 33 min 18 s left")


def test_in_a_log_a_countable_step_writes_one_line_per_tenth_and_its_end():
    log = io.StringIO()
    with step("creating 1000 nodes", out=log) as progress:
        for done in range(1, 1001):
            progress.count(done, 1000)
    lines = log.getvalue().splitlines()
    assert lines[0] == "creating 1000 nodes ..."
    assert len(lines) == 1 + 1 + 10 + 1  # the start, the first item (the total), each tenth, the end
    assert lines[1].startswith("creating 1000 nodes [..............................] 1/1000")
    assert lines[2].startswith("creating 1000 nodes [###...........................] 100/1000  about ")
    assert lines[-1].startswith("creating 1000 nodes done (")


def test_on_a_terminal_the_line_is_redrawn_in_place_and_a_failure_is_said():
    screen = Terminal()
    with pytest.raises(RuntimeError), step("starting the control plane", out=screen) as progress:
        progress.count(1, 2)
        raise RuntimeError("etcd did not start")
    text = screen.getvalue()
    assert "\r\033[K" in text and "\n" not in text.rstrip("\n")  # redrawn, one final line
    assert text.rstrip().endswith("starting the control plane failed (0 s)")
