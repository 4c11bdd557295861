"""The ledger: a demo application whose transactions span two volumes, and the rules that
quiesce it (used by the playground and by the end-to-end tests).

It appends "begin N" to /a/log, then "end N" to /b/log, as fast as it can. Two copies of its
volumes are consistent when every transaction is in both or in neither. While /tmp/pause
exists it stops between transactions and says so with /tmp/paused; each pause is logged (in
seconds of uptime) in /tmp/pauselog.
"""

from __future__ import annotations

from pathlib import Path

from localcluster.realnode import run_app_on_real_node
from storkcore.kube import Kube
from storkcore.snapshots import RULES

APP = """
n=0
while true; do
  if [ -e /tmp/pause ]; then
    if [ ! -e /tmp/paused ]; then read up _ < /proc/uptime; echo "start $up" >> /tmp/pauselog; touch /tmp/paused; fi
    sleep 0.02; continue
  fi
  if [ -e /tmp/paused ]; then read up _ < /proc/uptime; echo "end $up" >> /tmp/pauselog; rm -f /tmp/paused; fi
  n=$((n+1))
  echo "begin $n" >> /a/log
  echo "end $n" >> /b/log
done
"""
# Pre-rule: ask for a pause, wait until the application is between transactions, hold it.
QUIESCE = (
    "rm -f /tmp/paused; touch /tmp/pause; while [ ! -e /tmp/paused ]; do sleep 0.02; done; "
    "${WAIT_CMD}; rm -f /tmp/pause"
)
# Post-rule: record when it ran and whether the application was still held.
RECORD = 'echo "post $(date +%s) $([ -e /tmp/pause ] && echo held || echo free)" >> /tmp/postlog'


def run_ledger(kube: Kube, namespace: str, name: str = "ledger") -> None:
    """The ledger on the real node, with claims `a` and `b` at /a and /b."""
    run_app_on_real_node(kube, namespace, name, {"a": "/a", "b": "/b"}, APP)


def create_rule(kube: Kube, namespace: str, name: str, *items: dict) -> None:
    body = {"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "Rule", "metadata": {"name": name}}
    kube.create(RULES, namespace, {**body, "rules": list(items)})


def ledger_rules(kube: Kube, namespace: str, app: str = "ledger") -> None:
    """`quiesce` (pre-rule, background) and `record` (post-rule) for the ledger's pods."""
    selector = {"app": app}
    create_rule(
        kube,
        namespace,
        "quiesce",
        {"podSelector": selector, "actions": [{"type": "command", "value": QUIESCE, "background": True}]},
    )
    create_rule(kube, namespace, "record", {"podSelector": selector, "actions": [{"type": "command", "value": RECORD}]})


def transactions(folder: str | Path) -> tuple[set[int], set[int]]:
    """(begun, ended) transaction numbers in a copy of one volume."""
    lines = (Path(folder) / "log").read_text().splitlines()
    begun = {int(line.split()[1]) for line in lines if line.startswith("begin ")}
    ended = {int(line.split()[1]) for line in lines if line.startswith("end ")}
    return begun, ended


def consistent(copy_of_a: str | Path, copy_of_b: str | Path) -> bool:
    """Every transaction begun in the copy of /a has ended in the copy of /b, and no more."""
    begun, _ = transactions(copy_of_a)
    _, ended = transactions(copy_of_b)
    return begun == ended
