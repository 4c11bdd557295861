"""GroupVolumeSnapshot (SPEC §7.2): one CSI VolumeSnapshot per selected PVC, cut under a rule's lock.

Stages: PreChecks (PVCs Bound, rules valid, a snapshot class) -> PreSnapshot (pre-rule; its
background actions hold the application) -> Snapshot (VolumeSnapshots created, wait for every
`status.creationTime`, then release at once) -> PostSnapshot (post-rule) -> Final (wait for
`readyToUse`) -> Successful. Every wait has a deadline whose expiry is written as the reason.

Any failure after the pre-rule started releases the hold, runs the post-rule, deletes the
attempt's VolumeSnapshots, and retries from PreChecks while `numRetries < maxRetries`, else
Failed. A GroupVolumeSnapshot found InProgress that no worker of this process owns was left by a
process that died (or lost the lease): during PreSnapshot or Snapshot it is aborted that way
(never cut without the lock); during PostSnapshot or Final it is carried on.

Only the leader acts, and it asks before each step; a worker that loses the lease releases what
it holds and stops, leaving the status for the next leader to recover.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from controller.rules import BackgroundTask, RuleFailed, RuleRunner
from storkcore import objects
from storkcore.rules import rule_problems
from storkcore.selectors import label_selector_matches
from storkcore.snapshots import (
    DEFAULT_SNAPSHOT_CLASS,
    FAILED,
    FINAL,
    GROUP_LABEL,
    IN_PROGRESS,
    PENDING,
    POST_SNAPSHOT,
    PRE_CHECKS,
    PRE_SNAPSHOT,
    SNAPSHOT,
    SUCCESSFUL,
    owner_reference,
    snapshot_cut,
    snapshot_error,
    snapshot_ready,
)

log = logging.getLogger(__name__)
FINISHED = (SUCCESSFUL, FAILED)


@dataclass(frozen=True)
class GroupSnapshotSettings:
    prechecks_timeout: float = 300.0  # PVCs Bound, rules and a class present
    cut_timeout: float = 120.0  # every snapshot cut; the lock is held meanwhile (< the hold limit)
    ready_timeout: float = 1800.0  # every snapshot readyToUse (uploads may be slow)
    poll: float = 0.5


class SnapshotCluster(Protocol):
    """What the controller reads and writes (the API in production, memory in unit tests)."""

    def groups(self) -> list[dict[str, Any]]: ...
    def group(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def patch_group_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]: ...
    def pvcs(self, namespace: str) -> list[dict[str, Any]]: ...
    def rule(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def snapshot_classes(self) -> list[dict[str, Any]]: ...
    def provisioner_of(self, pvc: Mapping[str, Any]) -> str: ...
    def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def snapshot(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def snapshots_of(self, namespace: str, group: str) -> list[dict[str, Any]]: ...
    def delete_snapshot(self, namespace: str, name: str) -> None: ...
    def event(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None: ...


class AttemptFailed(Exception):
    def __init__(self, reason: str, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class LostLeadership(Exception):
    pass


@dataclass
class Plan:
    """What PreChecks found: the claims, the rules, and a snapshot class per claim."""

    pvcs: list[dict[str, Any]]
    pre_rule: dict[str, Any] | None
    post_rule: dict[str, Any] | None
    classes: dict[str, str]  # PVC name -> VolumeSnapshotClass name


def snapshot_name(group: str, pvc: str, attempt: int) -> str:
    name = f"{group}-{pvc}-{attempt}"
    if len(name) <= 253:
        return name
    return f"{name[:230]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def is_finished(group: Mapping[str, Any]) -> bool:
    return objects.text(group, "status", "status") in FINISHED


class GroupSnapshotController:
    def __init__(
        self,
        cluster: SnapshotCluster,
        rules: RuleRunner,
        settings: GroupSnapshotSettings = GroupSnapshotSettings(),
        is_leader: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_finish: Callable[[str], None] = lambda status: None,
    ) -> None:
        self.cluster = cluster
        self.rules = rules
        self.settings = settings
        self.is_leader = is_leader
        self.clock, self.sleep = clock, sleep
        self.on_finish = on_finish
        self._active: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._sections: dict[str, threading.Lock] = {}  # namespace -> its rule-and-cut section

    # -- scheduling work -------------------------------------------------------------------

    def tick(self) -> None:
        """Start a worker for every unfinished group that has none (leader only)."""
        if not self.is_leader():
            return
        for group in self.cluster.groups():
            key = objects.key(group)
            if is_finished(group) or objects.dig(group, "metadata", "deletionTimestamp"):
                continue
            with self._lock:
                if key in self._active:
                    continue
                self._active.add(key)
            threading.Thread(target=self._work, args=key, name=f"gvs-{key[1]}", daemon=True).start()

    def _work(self, namespace: str, name: str) -> None:
        try:
            self.process(namespace, name)
        except Exception:
            log.exception("group snapshot worker failed", extra={"namespace": namespace, "group": name})
        finally:
            with self._lock:
                self._active.discard((namespace, name))

    def process(self, namespace: str, name: str) -> None:
        """Take one group to Successful or Failed (or stop when the lease is lost)."""
        group = self.cluster.group(namespace, name)
        if group is None or is_finished(group):
            return
        try:
            resume_at = self._recover(group)
            while True:
                group = self.cluster.group(namespace, name) or group
                if is_finished(group):
                    return
                try:
                    self._attempt(group, resume_at)
                    return
                except AttemptFailed as failure:
                    self._after_failure(group, failure)
                    resume_at = PRE_CHECKS
        except LostLeadership:
            log.warning("lost the lease; the next leader carries on", extra={"group": name})

    # -- recovery after a restart ------------------------------------------------------------

    def _recover(self, group: dict[str, Any]) -> str:
        """Where to carry on with a group left InProgress by a process that is gone."""
        status = objects.mapping(group, "status")
        stage = status.get("stage") or PRE_CHECKS
        if status.get("status") != IN_PROGRESS and not status.get("ruleTasks"):
            return PRE_CHECKS
        if stage in (PRE_SNAPSHOT, SNAPSHOT) or status.get("ruleTasks"):
            reason = f"stork-controller restarted during {stage}: attempt aborted"
            self._event(group, "Warning", "AttemptAborted", reason)
            self._abort(group, self._recorded_tasks(group), self._rule_or_none(group, "postExecRule"), reason)
            self._after_failure(group, AttemptFailed(reason))
            return PRE_CHECKS
        return stage if stage in (POST_SNAPSHOT, FINAL) else PRE_CHECKS

    def _recorded_tasks(self, group: Mapping[str, Any]) -> list[BackgroundTask]:
        return [BackgroundTask.from_status(raw) for raw in objects.items(group, "status", "ruleTasks")]

    # -- one attempt -----------------------------------------------------------------------

    def _attempt(self, group: dict[str, Any], resume_at: str) -> None:
        if resume_at == PRE_CHECKS:
            plan = self._prechecks(group)
            self._snapshot_under_lock(group, plan)
            resume_at = POST_SNAPSHOT
        if resume_at == POST_SNAPSHOT:
            self._post_snapshot(group)
        self._final(group)

    def _prechecks(self, group: dict[str, Any]) -> Plan:
        namespace, name = objects.key(group)
        self._set(group, stage=PRE_CHECKS, status=objects.text(group, "status", "status") or PENDING)
        deadline = self.clock() + self.settings.prechecks_timeout
        shown = ""
        while True:
            self._check_leader()
            current = self.cluster.group(namespace, name) or group
            plan, problem = self._plan(current)
            if plan is not None:
                return plan
            if problem != shown:
                shown = problem
                self._set(group, status=PENDING, reason=problem)
                self._event(group, "Warning", "PreChecksPending", problem)
            if self.clock() >= deadline:
                raise AttemptFailed(
                    f"PreChecks: still not possible after {self.settings.prechecks_timeout:.0f}s: {problem}",
                    retry=False,
                )
            self.sleep(self.settings.poll)

    def _plan(self, group: Mapping[str, Any]) -> tuple[Plan | None, str]:
        namespace = objects.namespace(group)
        selector = objects.dig(group, "spec", "pvcSelector")
        names = set(objects.items(group, "spec", "pvcNames"))
        pvcs = sorted(
            (
                p
                for p in self.cluster.pvcs(namespace)
                if objects.name(p) in names or (selector and label_selector_matches(objects.labels(p), selector))
            ),
            key=objects.name,
        )
        missing = sorted(names - {objects.name(p) for p in pvcs})
        if missing:
            return None, f"spec.pvcNames: PVC {', '.join(missing)} not found in namespace {namespace}"
        if not pvcs:
            return None, f"spec.pvcSelector matches no PVC in namespace {namespace}"
        unbound = [objects.name(p) for p in pvcs if objects.text(p, "status", "phase") != "Bound"]
        if unbound:
            return None, f"PVC {', '.join(unbound)} not Bound yet"
        rules: dict[str, dict[str, Any] | None] = {}
        for field in ("preExecRule", "postExecRule"):
            rule_name = objects.text(group, "spec", field)
            rules[field] = self.cluster.rule(namespace, rule_name) if rule_name else None
            if rule_name and rules[field] is None:
                return None, f"spec.{field}: Rule {rule_name} not found in namespace {namespace}"
            problems = rule_problems(rules[field]) if rules[field] is not None else []
            if problems:
                return None, f"spec.{field}: Rule {rule_name} is invalid: {problems[0]}"
        if rules["postExecRule"] is not None and _has_background(rules["postExecRule"]):
            return None, "spec.postExecRule: a post-rule cannot have background actions"
        classes, problem = self._classes(group, pvcs)
        if problem:
            return None, problem
        return Plan(pvcs, rules["preExecRule"], rules["postExecRule"], classes), ""

    def _classes(self, group: Mapping[str, Any], pvcs: list[dict[str, Any]]) -> tuple[dict[str, str], str]:
        available = self.cluster.snapshot_classes()
        wanted = objects.text(group, "spec", "volumeSnapshotClassName")
        if wanted:
            if not any(objects.name(c) == wanted for c in available):
                return {}, f"spec.volumeSnapshotClassName: VolumeSnapshotClass {wanted} not found"
            return {objects.name(p): wanted for p in pvcs}, ""
        defaults = {
            c.get("driver"): objects.name(c)
            for c in sorted(available, key=objects.name, reverse=True)
            if objects.annotations(c).get(DEFAULT_SNAPSHOT_CLASS) == "true"
        }
        classes: dict[str, str] = {}
        for pvc in pvcs:
            driver = self.cluster.provisioner_of(pvc)
            if driver not in defaults:
                return {}, (
                    f"no default VolumeSnapshotClass for driver {driver or '(unknown)'} of PVC {objects.name(pvc)}: "
                    "mark one default or set spec.volumeSnapshotClassName"
                )
            classes[objects.name(pvc)] = defaults[driver]
        return classes, ""

    def _snapshot_under_lock(self, group: dict[str, Any], plan: Plan) -> None:
        """PreSnapshot and Snapshot, one group of a namespace at a time: two pre-rules holding the
        same application at once would release each other's hold."""
        section = self._section(objects.namespace(group))
        if not section.acquire(timeout=self.settings.prechecks_timeout):
            raise AttemptFailed(
                f"PreSnapshot: another group snapshot in namespace {objects.namespace(group)} held its rules for "
                f"over {self.settings.prechecks_timeout:.0f}s",
                retry=False,
            )
        try:
            self._pre_rule_and_cut(group, plan)
        finally:
            section.release()

    def _section(self, namespace: str) -> threading.Lock:
        with self._lock:
            return self._sections.setdefault(namespace, threading.Lock())

    def _pre_rule_and_cut(self, group: dict[str, Any], plan: Plan) -> None:
        """The lock is held from before the first cut until after the last."""
        self._check_leader()
        self._set(group, stage=PRE_SNAPSHOT, status=IN_PROGRESS, reason=None, volumeSnapshots=None)
        task: BackgroundTask | None = None
        try:
            if plan.pre_rule is not None:
                self._event(group, "Normal", "PreSnapshotRule", f"running rule {objects.name(plan.pre_rule)}")
                task = self.rules.run(
                    objects.namespace(group),
                    plan.pre_rule,
                    self._event_fn(group),
                    record=lambda t: self._set(group, ruleTasks=[t.to_status()]),
                )
            self._check_leader()
            self._set(group, stage=SNAPSHOT)
            self._create_snapshots(group, plan)
            self._wait_cut(group)
        except LostLeadership:
            if task is not None:
                self.rules.release(task)
            raise
        except (RuleFailed, AttemptFailed) as err:
            reason = str(err)
            self._abort(group, [task] if task else self._recorded_tasks(group), plan.post_rule, reason)
            raise AttemptFailed(reason) from err
        if task is not None:
            self.rules.release(task)
        self._set(group, ruleTasks=None)
        self._event(group, "Normal", "SnapshotsCut", f"{len(plan.pvcs)} snapshot(s) cut; application released")

    def _create_snapshots(self, group: dict[str, Any], plan: Plan) -> None:
        namespace, name = objects.key(group)
        attempt = int(objects.dig(group, "status", "numRetries") or 0)
        entries = []
        for pvc in plan.pvcs:
            body = {
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshot",
                "metadata": {
                    "name": snapshot_name(name, objects.name(pvc), attempt),
                    "namespace": namespace,
                    "labels": {GROUP_LABEL: name},
                    "ownerReferences": [owner_reference(group)],
                },
                "spec": {
                    "volumeSnapshotClassName": plan.classes[objects.name(pvc)],
                    "source": {"persistentVolumeClaimName": objects.name(pvc)},
                },
            }
            try:
                self.cluster.create_snapshot(namespace, body)
            except Exception as err:
                raise AttemptFailed(
                    f"Snapshot: creating VolumeSnapshot for PVC {objects.name(pvc)}: {str(err)[:200]}"
                ) from err
            entries.append({"volumeSnapshotName": body["metadata"]["name"], "parentVolumeID": objects.name(pvc)})
        self._set(group, volumeSnapshots=entries)

    def _wait_cut(self, group: dict[str, Any]) -> None:
        deadline = self.clock() + self.settings.cut_timeout
        while True:
            self._check_leader()
            snapshots = self._current_snapshots(group)
            failed = [
                f"{objects.name(s)}: {snapshot_error(s)}"
                for s in snapshots
                if snapshot_error(s) and not snapshot_cut(s)
            ]
            if failed:
                raise AttemptFailed(f"Snapshot: the driver failed to cut {'; '.join(failed)}")
            waiting = [objects.name(s) for s in snapshots if not snapshot_cut(s)]
            if not waiting:
                self._record_snapshots(group, snapshots)
                return
            if self.clock() >= deadline:
                raise AttemptFailed(
                    f"Snapshot: {', '.join(waiting)} not cut within {self.settings.cut_timeout:.0f}s "
                    "(no status.creationTime); application released"
                )
            self.sleep(self.settings.poll)

    def _post_snapshot(self, group: dict[str, Any]) -> None:
        self._check_leader()
        self._set(group, stage=POST_SNAPSHOT, status=IN_PROGRESS)
        post_rule = self._rule_or_none(group, "postExecRule")
        if post_rule is None:
            return
        self._event(group, "Normal", "PostSnapshotRule", f"running rule {objects.name(post_rule)}")
        try:
            self.rules.run(objects.namespace(group), post_rule, self._event_fn(group))
        except RuleFailed as err:
            reason = f"PostSnapshot: {err}"
            self._abort(group, [], None, reason)
            raise AttemptFailed(reason) from err

    def _final(self, group: dict[str, Any]) -> None:
        self._check_leader()
        self._set(group, stage=FINAL, status=IN_PROGRESS)
        deadline = self.clock() + self.settings.ready_timeout
        while True:
            self._check_leader()
            snapshots = self._current_snapshots(group)
            if snapshots and all(snapshot_ready(s) for s in snapshots):
                self._record_snapshots(group, snapshots)
                self._set(group, status=SUCCESSFUL, reason=None)
                self._event(group, "Normal", "Successful", f"{len(snapshots)} snapshot(s) ready to use")
                self.on_finish(SUCCESSFUL)
                return
            if self.clock() >= deadline:
                waiting = [
                    f"{objects.name(s)}{': ' + snapshot_error(s) if snapshot_error(s) else ''}"
                    for s in snapshots
                    if not snapshot_ready(s)
                ]
                limit = self.settings.ready_timeout
                reason = f"Final: not readyToUse within {limit:.0f}s: {', '.join(waiting) or 'snapshots missing'}"
                self._abort(group, [], None, reason)
                raise AttemptFailed(reason)
            self.sleep(self.settings.poll)

    # -- failure -------------------------------------------------------------------------

    def _abort(
        self, group: dict[str, Any], tasks: list[BackgroundTask], post_rule: dict[str, Any] | None, reason: str
    ) -> None:
        """Undo an attempt: release the hold, run the post-rule, delete its VolumeSnapshots."""
        log.warning("aborting group snapshot attempt", extra={"group": objects.name(group), "reason": reason[:300]})
        for task in tasks:
            self.rules.release(task)
        self._set(group, ruleTasks=None)
        if post_rule is not None:
            try:
                self.rules.run(objects.namespace(group), post_rule, self._event_fn(group))
            except RuleFailed as err:
                self._event(group, "Warning", "PostSnapshotRuleFailed", str(err))
        namespace, name = objects.key(group)
        for snapshot in self.cluster.snapshots_of(namespace, name):
            self.cluster.delete_snapshot(namespace, objects.name(snapshot))

    def _after_failure(self, group: dict[str, Any], failure: AttemptFailed) -> None:
        retries = int(objects.dig(group, "status", "numRetries") or 0)
        limit = int(objects.dig(group, "spec", "maxRetries") or 0)
        if failure.retry and retries < limit:
            self._set(
                group,
                stage=PRE_CHECKS,
                status=IN_PROGRESS,
                numRetries=retries + 1,
                reason=failure.reason,
                volumeSnapshots=None,
            )
            self._event(group, "Warning", "Retrying", f"attempt {retries + 1} of {limit}: {failure.reason}")
            return
        self._set(group, status=FAILED, reason=failure.reason)
        self._event(group, "Warning", "Failed", failure.reason)
        self.on_finish(FAILED)

    # -- helpers -------------------------------------------------------------------------

    def _current_snapshots(self, group: Mapping[str, Any]) -> list[dict[str, Any]]:
        namespace = objects.namespace(group)
        names = [objects.text(e, "volumeSnapshotName") for e in objects.items(group, "status", "volumeSnapshots")]
        found = [self.cluster.snapshot(namespace, n) for n in names]
        missing = [n for n, s in zip(names, found, strict=True) if s is None]
        if missing or not names:
            raise AttemptFailed(
                f"{objects.text(group, 'status', 'stage')}: VolumeSnapshot {', '.join(missing) or '(none)'} missing"
            )
        return [s for s in found if s is not None]

    def _record_snapshots(self, group: dict[str, Any], snapshots: list[dict[str, Any]]) -> None:
        parents = {
            objects.text(e, "volumeSnapshotName"): objects.text(e, "parentVolumeID")
            for e in objects.items(group, "status", "volumeSnapshots")
        }
        entries = []
        for s in snapshots:
            ready = snapshot_ready(s)
            entries.append(
                {
                    "volumeSnapshotName": objects.name(s),
                    "parentVolumeID": parents.get(
                        objects.name(s), objects.text(s, "spec", "source", "persistentVolumeClaimName")
                    ),
                    "dataSource": objects.text(s, "status", "boundVolumeSnapshotContentName"),
                    "creationTime": objects.text(s, "status", "creationTime"),
                    "readyToUse": ready,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            **({"message": snapshot_error(s)} if snapshot_error(s) else {}),
                        }
                    ],
                }
            )
        self._set(group, volumeSnapshots=entries)

    def _rule_or_none(self, group: Mapping[str, Any], field: str) -> dict[str, Any] | None:
        rule_name = objects.text(group, "spec", field)
        return self.cluster.rule(objects.namespace(group), rule_name) if rule_name else None

    def _set(self, group: dict[str, Any], **fields: Any) -> None:
        """Merge into the status (None removes a field) and keep our copy in step."""
        namespace, name = objects.key(group)
        updated = self.cluster.patch_group_status(namespace, name, fields)
        group["status"] = updated.get("status") or {}

    def _event(self, group: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        self.cluster.event(group, event_type, reason, message)

    def _event_fn(self, group: Mapping[str, Any]) -> Callable[[str, str, str], None]:
        return lambda event_type, reason, message: self._event(group, event_type, reason, message)

    def _check_leader(self) -> None:
        if not self.is_leader():
            raise LostLeadership()


def _has_background(rule: Mapping[str, Any]) -> bool:
    return any(a.get("background") for item in objects.items(rule, "rules") for a in objects.items(item, "actions"))
