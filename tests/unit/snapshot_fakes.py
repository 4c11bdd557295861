"""In-memory stand-ins for the group snapshot controller's cluster and for pods/exec.

The executor understands the four command shapes the rule runner sends (foreground action,
background start, "reached?" probe, release) and keeps a timeline of what happened, so tests
can assert the order a user cares about: held before the first cut, released after the last.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.execs import ExecResult, PodGone
from controller.rules import FOREGROUND, START_BACKGROUND
from storkcore import objects
from storkcore.snapshots import GROUP_LABEL


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.wall_start = 1_800_000_000.0
        self.on_sleep: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_start + self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)
        for hook in self.on_sleep:
            hook()


@dataclass
class Finished:
    result: ExecResult

    def finished(self) -> ExecResult:
        return self.result

    def close(self) -> None:
        pass


@dataclass
class Holding:
    """A background action: runs until released (or until told to exit); after its release the
    part after ${WAIT_CMD} takes `unlock_polls` more looks before it has ended."""

    exit_with: ExecResult | None = None
    unlock_polls: int = -1  # -1: not released
    on_end: Callable[[], None] = lambda: None

    def finished(self) -> ExecResult | None:
        if self.unlock_polls > 0:
            self.unlock_polls -= 1
        elif self.unlock_polls == 0 and self.exit_with is None:
            self.exit_with = ExecResult(0, "")
            self.on_end()
        return self.exit_with

    def close(self) -> None:
        pass


@dataclass
class FakeExecutor:
    timeline: list[str] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)  # command value -> exit code
    hanging: set[str] = field(default_factory=set)  # command values that never end
    background_dies: bool = False  # the background action exits before ${WAIT_CMD}
    files: set[str] = field(default_factory=set)  # "pod:path" marks
    held: dict[str, Holding] = field(default_factory=dict)  # "pod:mark" -> its background command
    unlock_polls: int = 0  # how slowly a released background command finishes
    gone: set[str] = field(default_factory=set)  # pods that vanished

    def start(self, namespace: str, pod: str, container: str, argv: Sequence[str]):
        if pod in self.gone:
            raise PodGone(pod)
        if argv[2] == FOREGROUND:
            value = argv[4]
            self.timeline.append(f"run {value} in {pod}/{container}")
            if value in self.hanging:
                return Holding()
            return Finished(ExecResult(self.exit_codes.get(value, 0), f"output of {value}"))
        if argv[2] == START_BACKGROUND:
            mark, command = argv[3], argv[5]
            if self.background_dies:
                return Holding(ExecResult(3, "lock refused"))
            self.timeline.append(f"hold {pod}")
            if f"sh {mark}.sh" in command:
                self.files.add(f"{pod}:{mark}.reached")
            self.held[f"{pod}:{mark}"] = Holding(on_end=lambda: self.timeline.append(f"unlocked {pod}"))
            return self.held[f"{pod}:{mark}"]
        if argv[0] == "test":
            return Finished(ExecResult(0 if f"{pod}:{argv[2]}" in self.files else 1, ""))
        # release: touches <mark>.release when <mark>.reached exists
        mark = argv[2].split("[ -e ")[1].split(".reached")[0]
        if f"{pod}:{mark}.reached" in self.files:
            self.files.discard(f"{pod}:{mark}.reached")
            self.timeline.append(f"release {pod}")
            if f"{pod}:{mark}" in self.held:  # the command after ${WAIT_CMD} runs to its end
                self.held[f"{pod}:{mark}"].unlock_polls = self.unlock_polls
        return Finished(ExecResult(0, ""))

    def holding(self) -> bool:
        return any(f.endswith(".reached") for f in self.files)


def pod(name: str, labels: Mapping[str, str], containers: Sequence[str] = ("app",), phase: str = "Running", **notes):
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": dict(labels),
            "annotations": notes,
        },
        "spec": {"containers": [{"name": c} for c in containers]},
        "status": {"phase": phase},
    }


def pvc(name: str, labels: Mapping[str, str], phase: str = "Bound", class_name: str = "fast") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": dict(labels)},
        "spec": {"storageClassName": class_name},
        "status": {"phase": phase},
    }


def rule(name: str, *items: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "rules": list(items)}


def group(name: str = "gvs", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "GroupVolumeSnapshot",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"pvcSelector": {"matchLabels": {"app": "db"}}, **spec},
    }


@dataclass
class FakeSnapshotCluster:
    """Objects in memory; a simulated CSI driver cuts a snapshot after `cut_after` sleeps."""

    clock: FakeClock
    executor: FakeExecutor
    groups_: dict[str, dict[str, Any]] = field(default_factory=dict)
    pvcs_: list[dict[str, Any]] = field(default_factory=list)
    rules_: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods_: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "metadata": {
                    "name": "csi-snap",
                    "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
                },
                "driver": "csi.example.com",
            }
        ]
    )
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    cut_after: int = 2  # sleeps before a created snapshot is cut; -1: never
    ready_after: int = 2  # sleeps after the cut before readyToUse
    fail_cuts: int = 0  # this many snapshots get status.error instead of a cut

    def __post_init__(self) -> None:
        self.clock.on_sleep.append(self._advance)

    def _advance(self) -> None:
        for snap in self.snapshots.values():
            snap["_age"] = snap.get("_age", 0) + 1
            status = snap.setdefault("status", {})
            if self.fail_cuts and not status.get("error") and not status.get("creationTime"):
                self.fail_cuts -= 1
                status["error"] = {"message": "simulated driver failure"}
            if status.get("error"):
                continue
            if self.cut_after >= 0 and snap["_age"] >= self.cut_after and not status.get("creationTime"):
                status["creationTime"] = f"t{self.clock.now:.2f}"
                status["boundVolumeSnapshotContentName"] = f"content-{snap['metadata']['name']}"
                self.executor.timeline.append(f"cut {snap['metadata']['name']} held={self.executor.holding()}")
            if status.get("creationTime") and snap["_age"] >= self.cut_after + self.ready_after:
                status["readyToUse"] = True

    def add_group(self, body: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        if status:
            body["status"] = status
        self.groups_[body["metadata"]["name"]] = body

    def groups(self):
        return [copy.deepcopy(g) for g in self.groups_.values()]

    def group(self, namespace, name):
        found = self.groups_.get(name)
        return copy.deepcopy(found) if found else None

    def patch_group_status(self, namespace, name, status):
        current = self.groups_[name].setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = copy.deepcopy(value)
        return copy.deepcopy(self.groups_[name])

    def pvcs(self, namespace):
        return list(self.pvcs_)

    def rule(self, namespace, name):
        return self.rules_.get(name)

    def snapshot_classes(self):
        return list(self.classes)

    def provisioner_of(self, claim):
        return "csi.example.com"

    def create_snapshot(self, namespace, body):
        created = copy.deepcopy(dict(body))
        self.snapshots[body["metadata"]["name"]] = created
        self.executor.timeline.append(f"create {body['metadata']['name']}")
        return created

    def snapshot(self, namespace, name):
        return self.snapshots.get(name)

    def snapshots_of(self, namespace, group_name):
        return [s for s in self.snapshots.values() if objects.labels(s).get(GROUP_LABEL) == group_name]

    def delete_snapshot(self, namespace, name):
        self.snapshots.pop(name, None)
        self.deleted.append(name)

    def event(self, obj, event_type, reason, message):
        self.events.append((event_type, reason, message))

    def pods(self, namespace):
        return list(self.pods_)

    def pod(self, namespace, name):
        return next((p for p in self.pods_ if objects.name(p) == name), None)
