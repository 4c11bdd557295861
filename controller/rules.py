"""Rule execution (SPEC §7.1): commands in an application's pods around a snapshot's cut.

Foreground actions run `sh -c VALUE` in every selected pod in parallel and must exit 0 before
their deadline. Background actions hold the application: `${WAIT_CMD}` becomes
`sh /tmp/stork-rule-<task>-<n>.sh`, a script (written into the container by the same exec)
that marks "reached" and then waits until stork-py releases it or until its own hold limit
passes, so an application is never left frozen when stork-py dies. The task is recorded by the
caller (in its owner's status) before anything is started, so a restarted controller can
release it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.execs import ExecUnavailable, Executor, PodGone, RunningExec, run_to_end
from storkcore import objects
from storkcore.rules import WAIT_PLACEHOLDER

log = logging.getLogger(__name__)
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


@dataclass(frozen=True)
class RuleSettings:
    action_timeout: float = 60.0  # each action's deadline (foreground exit, background mark)
    hold_timeout: float = 300.0  # a background action's own limit, enforced in the pod
    scratch: str = "/tmp"  # where the wait script and its marks live in the container


class RuleFailed(Exception):
    """A rule could not complete: the message says which action, where, and why."""


@dataclass
class HeldPod:
    namespace: str
    name: str
    uid: str
    container: str
    mark: str  # path prefix of the action's files in the container


@dataclass
class BackgroundTask:
    """What a pre-rule left holding the application; kept in the owner's status."""

    taskID: str
    rule: str
    started: str
    holdDeadline: str
    pods: list[HeldPod] = field(default_factory=list)

    def to_status(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> BackgroundTask:
        pods = [
            HeldPod(**{k: str(p.get(k) or "") for k in HeldPod.__dataclass_fields__}) for p in raw.get("pods") or []
        ]
        return cls(
            str(raw.get("taskID")), str(raw.get("rule")), str(raw.get("started")), str(raw.get("holdDeadline")), pods
        )

    def hold_deadline_epoch(self) -> float:
        return parse_time(self.holdDeadline)


class PodSource(Protocol):
    def pods(self, namespace: str) -> list[dict[str, Any]]: ...
    def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...


EventFn = Callable[[str, str, str], None]  # (type, reason, message) on the rule's owner


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def selected_pods(pods: Sequence[Mapping[str, Any]], selector: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """Running, not terminating pods whose labels include every pair of the selector."""
    found = []
    for pod in pods:
        labels = objects.labels(pod)
        if objects.text(pod, "status", "phase") != "Running" or objects.dig(pod, "metadata", "deletionTimestamp"):
            continue
        if all(labels.get(k) == v for k, v in selector.items()):
            found.append(pod)
    return sorted(found, key=objects.name)


def container_for(pod: Mapping[str, Any], wanted: str | None) -> str:
    """The item's container, else the pod's default-container annotation, else its first."""
    if wanted:
        return wanted
    default = objects.annotations(pod).get(DEFAULT_CONTAINER)
    if isinstance(default, str) and default:
        return default
    containers = objects.items(pod, "spec", "containers")
    return objects.text(containers[0], "name") if containers else ""


def wait_script(mark: str, hold_seconds: int) -> str:
    """Marks "reached", then waits for the release file or the hold limit, then cleans up."""
    return (
        f"touch {mark}.reached\n"
        f"end=$(( $(date +%s) + {hold_seconds} ))\n"
        f'while [ ! -e {mark}.release ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1 2>/dev/null || sleep 1; done\n'
        f"rm -f {mark}.reached {mark}.release {mark}.sh\n"
    )


# Write the script (argument $1) and run the action (argument $2) in one exec.
START_BACKGROUND = 'printf "%s" "$1" > "$0.sh" && exec sh -c "$2"'
# End a foreground action at its deadline where the container has `timeout`.
FOREGROUND = 'if command -v timeout >/dev/null 2>&1; then exec timeout "$0" sh -c "$1"; fi; exec sh -c "$1"'


class RuleRunner:
    def __init__(
        self,
        executor: Executor,
        pods: PodSource,
        settings: RuleSettings = RuleSettings(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.executor = executor
        self.pod_source = pods
        self.settings = settings
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self._streams: dict[str, list[RunningExec]] = {}  # background execs by task
        self._held: dict[str, BackgroundTask] = {}  # tasks holding an application now

    # -- running a rule ------------------------------------------------------------------

    def run(
        self,
        namespace: str,
        rule: Mapping[str, Any],
        event: EventFn,
        record: Callable[[BackgroundTask], None] = lambda task: None,
    ) -> BackgroundTask | None:
        """Run every item and action in order; returns what background actions now hold.

        `record` is called with the task before each background action starts (the caller
        persists it). On any failure what was started is released and RuleFailed raised.
        """
        rule_name = objects.name(rule)
        task: BackgroundTask | None = None
        started: list[RunningExec] = []
        try:
            for i, item in enumerate(objects.items(rule, "rules")):
                pods = selected_pods(self.pod_source.pods(namespace), objects.mapping(item, "podSelector"))
                if not pods:
                    event(
                        "Warning",
                        "RuleNoPods",
                        f"rule {rule_name} rules[{i}]: no running pod matches its podSelector; skipped",
                    )
                    continue
                for j, action in enumerate(objects.items(item, "actions")):
                    targets = pods[:1] if action.get("runInSinglePod") else pods
                    where = f"rule {rule_name} rules[{i}].actions[{j}]"
                    if action.get("background"):
                        task = task or self._new_task(rule_name)
                        self._held[task.taskID] = task
                        started += self._start_background(task, where, targets, item, action, record)
                    else:
                        self._run_foreground(where, targets, item, action)
            return task
        except BaseException:
            if task is not None:
                self.release(task)
            raise
        finally:
            if task is not None:  # kept open while they hold: closed by release()
                self._streams.setdefault(task.taskID, []).extend(started)

    def _new_task(self, rule_name: str) -> BackgroundTask:
        now = self.wall()
        return BackgroundTask(uuid.uuid4().hex[:12], rule_name, rfc3339(now), rfc3339(now + self.settings.hold_timeout))

    def _run_foreground(
        self, where: str, pods: Sequence[Mapping[str, Any]], item: Mapping[str, Any], action: Mapping[str, Any]
    ) -> None:
        timeout = self.settings.action_timeout
        argv = ["sh", "-c", FOREGROUND, str(max(1, int(timeout))), str(action.get("value") or "")]

        def one(pod: Mapping[str, Any]) -> str | None:
            namespace, name = objects.namespace(pod), objects.name(pod)
            try:
                result = run_to_end(
                    self._same_pod(objects.text(pod, "metadata", "uid")),
                    namespace,
                    name,
                    container_for(pod, item.get("container")),
                    argv,
                    timeout,
                    self.clock,
                    self.sleep,
                )
            except PodGone:
                return None  # a pod that went away has nothing left to do
            if result.timed_out:
                return f"{where}: pod {name}: no exit within {timeout:.0f}s {result.output.strip()[-200:]}".strip()
            if result.exit_code != 0:
                return f"{where}: pod {name}: exit {result.exit_code}: {result.output.strip()[-300:]}"
            return None

        problems = [p for p in self._parallel(one, pods) if p]
        if problems:
            raise RuleFailed("; ".join(problems))

    def _start_background(
        self,
        task: BackgroundTask,
        where: str,
        pods: Sequence[Mapping[str, Any]],
        item: Mapping[str, Any],
        action: Mapping[str, Any],
        record: Callable[[BackgroundTask], None],
    ) -> list[RunningExec]:
        n = len(task.pods)
        held = [
            HeldPod(
                objects.namespace(p),
                objects.name(p),
                objects.text(p, "metadata", "uid"),
                container_for(p, item.get("container")),
                f"{self.settings.scratch}/stork-rule-{task.taskID}-{n + k}",
            )
            for k, p in enumerate(pods)
        ]
        task.pods.extend(held)
        record(task)  # persisted before anything holds the application
        script_limit = max(1, int(self.settings.hold_timeout))
        running: dict[str, RunningExec] = {}
        deadline = self.clock() + self.settings.action_timeout
        for pod in held:
            command = str(action.get("value") or "").replace(WAIT_PLACEHOLDER, f"sh {pod.mark}.sh")
            argv = ["sh", "-c", START_BACKGROUND, pod.mark, wait_script(pod.mark, script_limit), command]
            started = self._start_until(pod, argv, deadline)
            if started is not None:
                running[pod.name] = started
        self._wait_reached(where, held, running, deadline)
        return list(running.values())

    def _start_until(self, pod: HeldPod, argv: list[str], deadline: float) -> RunningExec | None:
        while True:
            try:
                return self._same_pod(pod.uid).start(pod.namespace, pod.name, pod.container, argv)
            except PodGone:
                return None
            except ExecUnavailable as err:
                if self.clock() + 0.5 >= deadline:
                    raise RuleFailed(f"pod {pod.name}: could not start the background action: {err}") from err
                self.sleep(0.5)

    def _wait_reached(
        self, where: str, held: list[HeldPod], running: Mapping[str, RunningExec], deadline: float
    ) -> None:
        waiting = {p.name: p for p in held if p.name in running}
        while waiting:
            for name, pod in list(waiting.items()):
                ended = running[name].finished()
                if self._reached(pod):
                    del waiting[name]
                elif ended is not None:
                    raise RuleFailed(
                        f"{where}: pod {name}: the background action ended (exit {ended.exit_code}) before "
                        f"${{WAIT_CMD}}: {ended.output.strip()[-300:]}"
                    )
            if not waiting:
                return
            if self.clock() >= deadline:
                raise RuleFailed(
                    f"{where}: pods {', '.join(sorted(waiting))} did not reach ${{WAIT_CMD}} within "
                    f"{self.settings.action_timeout:.0f}s"
                )
            self.sleep(0.1)

    def _reached(self, pod: HeldPod) -> bool:
        try:
            result = run_to_end(
                self._same_pod(pod.uid),
                pod.namespace,
                pod.name,
                pod.container,
                ["test", "-e", f"{pod.mark}.reached"],
                10,
                self.clock,
                self.sleep,
            )
        except PodGone:
            return True  # a pod that went away holds nothing
        return result.exit_code == 0

    # -- releasing -----------------------------------------------------------------------

    def release(self, task: BackgroundTask, give_up_after: float | None = None) -> None:
        """Tell every held pod to go on; idempotent; retried until the hold limit (or sooner)."""
        pending = list(task.pods)
        give_up = task.hold_deadline_epoch()
        if give_up_after is not None:
            give_up = min(give_up, self.wall() + give_up_after)
        while pending:
            pending = [pod for pod in pending if not self._release_one(pod)]
            if not pending:
                break
            if self.wall() >= give_up:
                log.warning("release gave up; the hold limit ends it", extra={"task": task.taskID})
                break
            self.sleep(0.5)
        self._wait_ended(task, give_up)
        log.info("background actions released", extra={"task": task.taskID, "rule": task.rule})
        self._held.pop(task.taskID, None)
        for running in self._streams.pop(task.taskID, []):
            running.close()

    def _wait_ended(self, task: BackgroundTask, give_up: float) -> None:
        """Released is not yet resumed: wait until each background command has run to its end
        (the part after ${WAIT_CMD} that unlocks), so a post-rule runs on a running application."""
        deadline = min(self.clock() + self.settings.action_timeout, self.clock() + max(0.0, give_up - self.wall()))
        running = self._streams.get(task.taskID, [])
        while any(r.finished() is None for r in running) and self.clock() < deadline:
            self.sleep(0.05)
        for result in (r.finished() for r in running):
            if result is not None and result.exit_code not in (0, None):
                log.warning(
                    "a background action ended with an error after its release",
                    extra={"task": task.taskID, "exit": result.exit_code, "output": result.output[-300:]},
                )

    def release_all(self, give_up_after: float = 5.0) -> None:
        """On shutdown: let every application this process holds go on now, not at the hold limit."""
        for task in list(self._held.values()):
            self.release(task, give_up_after)

    def _release_one(self, pod: HeldPod) -> bool:
        argv = ["sh", "-c", f"if [ -e {pod.mark}.reached ]; then touch {pod.mark}.release; fi"]
        try:
            result = run_to_end(
                self._same_pod(pod.uid), pod.namespace, pod.name, pod.container, argv, 10, self.clock, self.sleep
            )
        except PodGone:
            return True
        return result.exit_code == 0

    # -- helpers -------------------------------------------------------------------------

    def _same_pod(self, uid: str) -> Executor:
        return _SamePod(self.executor, self.pod_source, uid)

    def _parallel(
        self, fn: Callable[[Mapping[str, Any]], str | None], pods: Sequence[Mapping[str, Any]]
    ) -> list[str | None]:
        if len(pods) == 1:
            return [fn(pods[0])]
        with ThreadPoolExecutor(max_workers=min(16, len(pods))) as pool:
            return list(pool.map(fn, pods))


@dataclass
class _SamePod:
    """Runs in a pod only while it is still the same pod (same uid): never in a replacement."""

    executor: Executor
    pods: PodSource
    uid: str

    def start(self, namespace: str, pod: str, container: str, argv: Sequence[str]) -> RunningExec:
        current = self.pods.pod(namespace, pod)
        if current is None or (self.uid and objects.text(current, "metadata", "uid") != self.uid):
            raise PodGone(f"{namespace}/{pod}")
        return self.executor.start(namespace, pod, container, argv)
