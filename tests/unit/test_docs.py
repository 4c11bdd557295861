"""The front page and the manual: every relative link in README.md and docs/ resolves (to a file,
and to a heading when it names one), and every command-line flag of every console script is
documented somewhere in docs/."""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONSOLE_SCRIPTS = {
    "stork-extender": "extender.cli",
    "stork-webhook": "webhook.cli",
    "stork-controller": "controller.cli",
    "stork-certs": "certs.cli",
    "storkctl": "storkctl.cli",
    "stork-playground": "localcluster.playground",
}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def relative_links() -> Iterator[tuple[Path, str]]:
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if not re.match(r"^[a-z]+:", target):
                yield page, target


def test_the_front_page_points_to_every_page_of_the_manual():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, page.name


@pytest.mark.parametrize(("page", "target"), list(relative_links()), ids=lambda v: str(v).split("/")[-1])
def test_every_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    linked = (page.parent / path).resolve() if path else page
    assert linked.exists(), f"{page.name}: {target}"
    if anchor and linked.suffix == ".md":
        assert anchor in anchors(linked), f"{page.name}: {target} (headings: {sorted(anchors(linked))})"


def flags(parser: argparse.ArgumentParser, command: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(command, the option strings of one flag) for a parser and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from flags(sub, f"{command} {name}")
        elif action.option_strings and "--help" not in action.option_strings:
            yield command, tuple(action.option_strings)


def every_flag() -> list[tuple[str, tuple[str, ...]]]:
    found = []
    for script, module in CONSOLE_SCRIPTS.items():
        found += sorted(set(flags(importlib.import_module(module).build_parser(), script)))
    return found


def test_every_flag_of_every_console_script_is_documented():
    manual = "\n".join(page.read_text() for page in PAGES[1:])
    missing = [
        f"{command} {'/'.join(options)}"
        for command, options in every_flag()
        if not any(re.search(re.escape(option) + r"(?![\w-])", manual) for option in options)
    ]
    assert missing == []


def test_the_flag_check_can_see_a_flag_missing():
    parser = argparse.ArgumentParser()
    parser.add_argument("--never-documented-anywhere")
    assert list(flags(parser, "x")) == [("x", ("--never-documented-anywhere",))]
    assert "--never-documented-anywhere" not in "\n".join(page.read_text() for page in PAGES)
