"""The d-push and d-pull modes of a batch: the devices move each VM's DI under its group's one confirmed
commit per destination device.

:func:`netmig.batch.migrate_many` prepares the static policies as its centralized batch does. Per group,
:class:`DistributedBatch`:

1. stages every destination device once: the group's merged static edit (an empty one on a device that
   takes only DI) and ``commit confirmed`` with the persist-id derived from the group id
   (:func:`netmig.modes.settle.persist_id_for`), in parallel;
2. sends one ``vdp-associate`` per VM (its own migration id, for its feedback and its import records,
   and the ``group-id``: the devices' follow-up confirmed commits then share the group's pending commit
   on each destination), to the VM's source bridge (S-bit) or destination bridge (M-bit), ``wave`` VMs
   at a time, and waits for every device each bridge announced to report ``migration-feedback``, until
   the feedback deadline; between waves the pending commits are re-armed (a follow-up confirmed commit
   changing nothing) so a long group does not outlive its confirm timeout on a device no transfer
   touched lately;
3. verifies every destination's static part, then confirms everywhere (as the single-VM flow,
   :class:`netmig.modes.settle.Settler`: a confirm failing for good after others confirmed gives every
   device back: merged static undo and one ``withdraw-di`` per VM).

A VM's transfers cannot be taken out of the group's pending commit alone: its DI is already in the
follow-up commits of the devices that took it, next to its static edit in the group's. So a failed
transfer (fail report, silence past the deadline, an associate refused) cancels everything the group
staged on every device (the devices' imports with it; the sources are untouched), and then the group is
tried again without the VMs the failure is attributed to (:mod:`netmig.batch_isolation`), as a new
group with its own group id, persist-ids and migration ids (``<group>-r1``, ...):

* a fail report or a refused associate names its VM: that VM is FAIL (``transfer failed: <reason>``,
  and the group the others were tried again as); the others are tried again together;
* silence past the deadline, or a session lost during the transfers, names no VM: the VMs are tried
  again in halves, recursively, down to the VM that fails alone; bounded (at most floor(log2 n) + 1
  splits, at most ``max_retries`` tries again per group, default twice that);
* a staging, verify or confirm failure is the devices', not a VM's: the group is FAIL as a whole, as
  is a group whose sessions could not be opened; nothing is tried again; so is a group in which a
  device answered none of the two or more reports expected of it (a device failing, which halving
  cannot isolate: with a 30 s deadline a 1,000-VM group would spend minutes finding nobody);
* a rollback that did not complete on some device stops the group: nothing more is tried, and the
  VMs not moved are FAIL naming the devices to look at.

Every VM tried more than once names the groups it was tried in. A VM's ``suspension_ms`` is the time
until its last try ended. Groups before and after are independent.

Journal (``journal``, a :class:`netmig.batch_journal.BatchJournal`): each try is one journaled
migration under its own group id (:func:`netmig.batch_journal.distributed_plan`: the devices and their
roles, the persist-ids derived from that id, each VM's migration id), begun before its first change;
every device step is written ahead as the single-VM distributed mode writes it (stage, the re-arming
commits, verify, each confirm, the give-back), and the record is closed (success, rolled-back) before
the next try starts, so ``netmig recover`` settles a try whose coordinator died: confirmed everywhere
or cancelled / compensated everywhere, the devices' imports withdrawn per VM. The destinations are
confirmed ``parallelism`` at a time, in name order.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from netmig.batch import VmResult
from netmig.batch_isolation import Attempt, isolate
from netmig.batch_merge import group_changes
from netmig.batch_middle import with_merged_undo
from netmig.change import DeviceChange
from netmig.devicegate import holding
from netmig.devices import DeviceHandle, handles_for, open_sessions
from netmig.errors import NetmigError, RpcError
from netmig.feedback import DevicePhase, Outcome
from netmig.journal import Step as JStep
from netmig.modes.centralized import PreparedMigration
from netmig.modes.distributed import LOCK_ATTEMPT_WAIT_S, Report, _associate, _stage
from netmig.modes.middle import MIGRATION_NS, di_routes, withdraw_op
from netmig.modes.settle import Settler, persist_id_for
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.quirks import BusyRetry
from netmig.settings import SshPolicy
from netmig.xmlkit import Element, children, element, local_name, text_of

if TYPE_CHECKING:
    from netmig.batch_journal import BatchJournal
    from netmig.journal_hook import MigrationRecorder

__all__ = ["DistributedBatch", "GroupOutcome", "report_group"]

log = logging.getLogger(__name__)
_NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
_GIVEN_BACK = (DevicePhase.ROLLED_BACK, DevicePhase.COMPENSATED)  # a staged device given back in full


def _nothing(running: Element) -> list[str]:
    return []


def _devices(p: PreparedMigration) -> tuple[str, ...]:
    """The devices a VM's move uses: its static changes' and the ones its DI goes to."""
    return tuple(sorted({c.endpoint.name for c in p.changes} | {d for _, d in di_routes(p.plan)}))


def _receivers(members: Sequence[PreparedMigration]) -> dict[str, list[str]]:
    """Per device the VMs whose DI it imports."""
    receivers: dict[str, list[str]] = {}
    for p in members:
        for name in sorted({d for _, d in di_routes(p.plan)}):
            receivers.setdefault(name, []).append(p.plan.vm_id)
    return receivers


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What became of one group: per VM the error (None: moved), and the devices each VM's move used;
    the group's time, retries included; per VM when its last try ended (its suspension: the VMs of one
    try resume together) and the group ids it was tried in."""

    errors: Mapping[str, str | None]
    devices: Mapping[str, tuple[str, ...]]
    elapsed_ms: float
    suspension_ms: Mapping[str, float] = field(default_factory=dict)
    tries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class DistributedBatch:
    """The d-push (``push``) or d-pull side of one batch: staging, associates, feedback, settling."""

    options: MigrationOptions
    push: bool
    ssh: SshPolicy
    environ: Mapping[str, str] | None = None
    wave: int = 16                 # VMs whose associates are in flight at once
    deadline_s: float = 30.0       # per wave: how long the devices' feedback is waited for
    batch_id: str = field(default_factory=lambda: "batch-" + secrets.token_hex(4))
    max_retries: int | None = None  # per group (None: batch_isolation's default, 2 * (log2 n + 1))
    journal: BatchJournal | None = None  # each try journaled as a migration of its own (module docstring)
    parallelism: int = 16          # destinations staged, and confirmed, at once

    def commit_group(self, number: int, members: Sequence[PreparedMigration],
                     changes: Sequence[DeviceChange]) -> GroupOutcome:
        """Move the group's VMs (``changes``: its merged static changes, one per device); after a
        rollback caused by transfer failures, try the others again (:func:`isolate`)."""
        started = time.perf_counter()
        group_id = f"{self.batch_id}-g{number}"

        def attempt(gid: str, part: Sequence[PreparedMigration]) -> Attempt:
            return self._attempt(number, gid, part, changes if gid == group_id else group_changes(part))

        done = isolate(group_id, members, attempt, lambda p: p.plan.vm_id, budget=self.max_retries)
        if done.retries:
            log.info("batch %s: group %d: %d retries, %d of %d VMs moved", self.batch_id, number,
                     done.retries, sum(e is None for e in done.errors.values()), len(members))
        devices = {p.plan.vm_id: _devices(p) for p in members}
        return GroupOutcome(done.errors, devices, (time.perf_counter() - started) * 1000, done.ended_ms,
                            done.tries)

    def _attempt(self, number: int, group_id: str, members: Sequence[PreparedMigration],
                 changes: Sequence[DeviceChange]) -> Attempt:
        """One try of (part of) the group as ``group_id``: stage, associate, verify, confirm, or give
        everything back."""
        mids = {p.plan.vm_id: f"{group_id}-{n}" for n, p in enumerate(members)}
        handles: dict[str, DeviceHandle] = {}
        for p in members:
            for name, handle in handles_for((*p.plan.source_devices, *p.plan.destination_devices),
                                            self.environ).items():
                handles.setdefault(name, handle)
        staged_changes = self._changes(members, changes, mids, handles)
        reporters = sorted({d.name for p in members
                            for d in (p.plan.source_devices if self.push else p.plan.destination_devices)})
        needed = sorted(set(staged_changes) | set(reporters))
        recorder: MigrationRecorder | None = None
        if self.journal is not None:
            try:
                recorder = self._begin(number, group_id, members, staged_changes, mids, handles, reporters)
            except NetmigError as exc:  # the journal refused the try: nothing was sent
                return Attempt({vm: f"{type(exc).__name__}: group {number} ({group_id}): not journaled: "
                                    f"{exc}" for vm in mids})
        outcome: Attempt | None = None
        staging: list[bool] = []
        try:
            with holding(handles[n].endpoint for n in staged_changes), \
                    open_sessions([handles[n] for n in needed], ssh=self.ssh,
                                  timeouts=self.options.timeouts) as sessions:
                outcome = self._run(number, group_id, members, staged_changes, mids, handles, sessions,
                                    reporters, recorder, staging)
        except NetmigError as exc:
            if outcome is None:
                error = f"{type(exc).__name__}: group {number} ({group_id}): {exc}"
                if not staging:  # sessions not opened or subscribed: nothing was sent
                    self._close(recorder, error, stuck=False, vms=len(mids))
                elif recorder is not None:  # failed while settling: the record stays for recovery
                    log.warning("batch %s: %s: left for netmig recover: %s", self.batch_id, group_id, exc)
                return Attempt({vm: error for vm in mids})
            log.warning("batch %s: %s: closing sessions: %s", self.batch_id, group_id, exc)
        assert outcome is not None
        return outcome

    def _begin(self, number: int, group_id: str, members: Sequence[PreparedMigration],
               changes: Mapping[str, DeviceChange], mids: Mapping[str, str],
               handles: Mapping[str, DeviceHandle], reporters: Sequence[str]) -> MigrationRecorder:
        """Journal the try before its first change (:func:`netmig.batch_journal.distributed_plan`)."""
        from netmig.batch_journal import distributed_plan

        assert self.journal is not None
        bridges = {(p.plan.source if self.push else p.plan.destination).bridge.name for p in members}
        roles = (dict.fromkeys(reporters, "reporter") | dict.fromkeys(bridges, "bridge")
                 | dict.fromkeys(changes, "destination"))
        plan = distributed_plan(group_id, members, changes, handles, roles, number=number,
                                batch_id=self.batch_id, mids=mids, receivers=_receivers(members),
                                vm_devices={p.plan.vm_id: _devices(p) for p in members},
                                options=self.options, ssh=self.ssh)
        return self.journal.attempt(group_id, members, sorted(roles), plan)

    def _changes(self, members: Sequence[PreparedMigration], changes: Sequence[DeviceChange],
                 mids: Mapping[str, str], handles: Mapping[str, DeviceHandle]) -> dict[str, DeviceChange]:
        """Per destination: the merged static change with the merged undo and one withdraw-di per VM
        receiving DI there (an empty edit on a DI-only device)."""
        receivers = _receivers(members)
        by_name = {c.endpoint.name: with_merged_undo(c, members) for c in changes}
        for name, vms in receivers.items():
            base = by_name.get(name) or DeviceChange(handles[name].endpoint, element(_NC_NS, "config"),
                                                     _nothing)
            undoable = not len(base.edit) or base.undo is not None  # withdraw-di alone is no static undo
            withdraws = tuple(withdraw_op(mids[vm], vm) for vm in vms)
            by_name[name] = replace(base, undo_ops=(*base.undo_ops, *withdraws) if undoable
                                    else base.undo_ops)
        return dict(sorted(by_name.items()))

    def _run(self, number: int, group_id: str, members: Sequence[PreparedMigration],
             changes: Mapping[str, DeviceChange], mids: Mapping[str, str],
             handles: Mapping[str, DeviceHandle], sessions: Mapping[str, DeviceSession],
             reporters: Sequence[str], recorder: MigrationRecorder | None = None,
             staging: list[bool] | None = None) -> Attempt:
        """Stage, associate, verify, confirm (or give back) one try; with a ``recorder`` every device
        step is journaled before it is taken, as the single-VM distributed mode journals it, and the
        record is closed before this returns (``staging`` gets an entry once staging begins)."""
        opts = self.options
        where = f"group {number} ({group_id}: {len(members)} VMs)"
        errors: dict[str, str | None] = dict.fromkeys(mids)
        for name in reporters:
            sessions[name].create_subscription()
        if staging is not None:
            staging.append(True)
        staged, failures = self._stage_all(changes, sessions, group_id, recorder)
        blamed: dict[str, str] = {}
        unattributed = False
        mute: list[str] = []
        step = "transfer"
        try:
            if not failures:
                failed_vms, mute = self._transfer(members, handles, sessions, mids, group_id, staged,
                                                  recorder)
                dead = (f"; {', '.join(mute)} answered none of its associates (a device failing: not "
                        "tried again)") if mute else ""
                for vm, (reason, named) in failed_vms.items():
                    errors[vm] = f"transfer failed: {reason}{dead}"
                    if named:
                        blamed[vm] = reason
                    else:
                        unattributed = True
                if failed_vms:
                    names = sorted(failed_vms)
                    failures["transfer"] = (f"{len(names)} VM(s) failed their transfer "
                                            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                                            f"{dead}")
            step = "verify"
            if not failures:
                for name in staged:
                    change = changes[name]
                    if recorder is not None:
                        recorder.step(name, JStep.VERIFY, persist_id=None, stage="apply")
                    mismatches = change.verify(sessions[name].get_config("running", change.verify_filter))
                    if mismatches:
                        failures[name] = f"{name}: verify: running lacks the change: {mismatches[0]}"
                    if recorder is not None:
                        recorder.result(name, JStep.VERIFY, ok=not mismatches, stage="apply",
                                        error=failures.get(name))
        except NetmigError as exc:  # a session failed after staging: everything staged is given back
            failures[step] = f"{type(exc).__name__}: {step}: {exc}"
            unattributed = unattributed or step == "transfer"
        settler = Settler(sessions, changes, group_id, opts, recorder=recorder, on_step=None,
                          factory=lambda ep: DeviceSession(ep, ssh=self.ssh, timeouts=opts.timeouts))
        if failures:
            settler.give_back([], staged)
            stuck = tuple(sorted(n for n in staged if settler.phases.get(n) not in _GIVEN_BACK))
            tail = f"; NOT rolled back on {', '.join(stuck)}" if stuck else ""
            what = "; ".join(failures[k] for k in sorted(failures))
            for vm in errors:
                errors[vm] = (f"MigrationRolledBackError: {where} rolled back: {errors[vm] or what}{tail}")
            log.info("batch %s: %s rolled back: %s", self.batch_id, where, what)
            self._close(recorder, f"{where} rolled back: {what}{tail}", stuck=bool(stuck), vms=len(mids))
            return Attempt(errors, blamed, unattributed, retryable=set(failures) == {"transfer"} and not mute,
                           stuck=stuck)
        confirmed, settle_errors = self._confirm(settler, staged)
        if settle_errors:  # failed for good after others confirmed: give every device back
            settler.give_back(confirmed, [n for n in staged if n not in confirmed])
            stuck = tuple(sorted(n for n, p in settler.phases.items()
                                 if p in (DevicePhase.CONFIRMED, DevicePhase.ROLLBACK_FAILED)))
            what = "; ".join(f"{n}: {settle_errors[n]}" for n in sorted(settle_errors))
            kind = "RollbackIncompleteError" if stuck else "MigrationRolledBackError"
            tail = f"; keep the change: {', '.join(stuck)}" if stuck else ""
            for vm in errors:
                errors[vm] = f"{kind}: {where}: confirming commit failed ({what}){tail}"
            self._close(recorder, f"{where}: confirming commit failed ({what}){tail}", stuck=bool(stuck),
                        vms=len(mids))
            return Attempt(errors, stuck=stuck)
        self._close(recorder, None, stuck=False, vms=len(mids))
        return Attempt(errors)

    def _confirm(self, settler: Settler, staged: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """Confirm the staged devices, ``parallelism`` at a time (in name order); stops at the first
        batch of devices with a confirm failing for good. The confirmed devices, and the failures."""
        confirmed: list[str] = []
        size = max(1, self.parallelism)
        for start in range(0, len(staged), size):
            chunk = staged[start:start + size]
            failed = settler.confirm(chunk)
            confirmed.extend(n for n in chunk if n not in failed)
            if failed:
                return confirmed, failed
        return confirmed, {}

    def _close(self, recorder: MigrationRecorder | None, error: str | None, *, stuck: bool, vms: int) -> None:
        if recorder is not None and self.journal is not None:
            self.journal.close(recorder, error, stuck=stuck, vms=vms)

    def _stage_all(self, changes: Mapping[str, DeviceChange], sessions: Mapping[str, DeviceSession],
                   group_id: str, recorder: MigrationRecorder | None = None,
                   ) -> tuple[list[str], dict[str, str]]:
        """Stage every destination in parallel; on any failure the staged ones are cancelled at once.
        The staged devices (still pending) and the failures."""
        opts = self.options
        staged: list[str] = []
        failures: dict[str, str] = {}
        lock_wait = BusyRetry(min(LOCK_ATTEMPT_WAIT_S, opts.timeouts.busy_wait_s), min_interval_s=0.05)

        def stage(name: str) -> None:
            try:
                _stage(sessions[name], changes[name], persist_id_for(group_id, name), opts, recorder,
                       lock_wait)
                staged.append(name)
            except NetmigError as exc:
                failures[name] = f"{name}: stage: {exc}"
                if recorder is not None:
                    recorder.note(name, JStep.COMMIT_CONFIRMED, ok=False, detail={"error": str(exc)})

        with ThreadPoolExecutor(max_workers=max(1, min(self.parallelism, len(changes)))) as workers:
            list(workers.map(stage, sorted(changes)))
        return sorted(staged), failures

    def _transfer(self, members: Sequence[PreparedMigration], handles: Mapping[str, DeviceHandle],
                  sessions: Mapping[str, DeviceSession], mids: Mapping[str, str], group_id: str,
                  staged: Sequence[str], recorder: MigrationRecorder | None = None,
                  ) -> tuple[dict[str, tuple[str, bool]], list[str]]:
        """Associate every VM, ``wave`` at a time; the VMs whose transfer failed, with the reason and
        whether the failure is the VM's own (the first wave with a failure is the last), and the devices
        that answered none of the several reports expected of them in that wave."""
        armed = time.monotonic()
        for start in range(0, len(members), max(1, self.wave)):
            failed, mute = self._wave(members[start:start + self.wave], sessions, handles, mids, group_id)
            if failed:
                return failed, mute
            if time.monotonic() - armed > self.options.commit.confirm_timeout_s / 3:
                self._rearm(sessions, staged, group_id, recorder)
                armed = time.monotonic()
        return {}, []

    def _wave(self, wave: Sequence[PreparedMigration], sessions: Mapping[str, DeviceSession],
              handles: Mapping[str, DeviceHandle], mids: Mapping[str, str], group_id: str,
              ) -> tuple[dict[str, tuple[str, bool]], list[str]]:
        """One wave's associates and feedback. A failure is the VM's own (True) when a device's fail
        report or the bridge's refusal of its associate names it; silence past the deadline and a
        session failing under the associate name nobody. Also the devices silent for every one of two
        or more VMs (a device failing, not a VM: halving the group would not find anyone)."""
        failed: dict[str, tuple[str, bool]] = {}
        expected: dict[str, dict[str, Report]] = {}   # reporting device -> migration id -> its report
        vm_of = {mids[p.plan.vm_id]: p.plan.vm_id for p in wave}
        for p in wave:
            vm = p.plan.vm_id
            bridge, op = _associate(p.plan, self.options, handles, mids[vm], push=self.push,
                                    feedback_deadline_s=self.deadline_s, group_id=group_id)
            try:
                reply = sessions[bridge].rpc(op)
            except NetmigError as exc:  # refused (rpc-error): the VM's; a session failing: nobody's
                failed[vm] = (f"{vm}: {exc}", isinstance(exc, RpcError))
                continue
            announced = [(e.text or "").strip() for e in children(reply, MIGRATION_NS, "reporting-device")]
            count = (text_of(reply, MIGRATION_NS, "expected-reports") or "").strip()
            if count != str(len(announced)) or not set(announced) <= set(sessions):
                failed[vm] = (f"{vm}: {sessions[bridge].device}: vdp-associate: bridge announced "
                              f"{announced} but expects {count or '?'} reports", True)
                continue
            for name in announced:
                expected.setdefault(name, {})[mids[vm]] = Report(name)
        deadline = time.monotonic() + self.deadline_s
        with ThreadPoolExecutor(max_workers=max(1, len(expected))) as workers:
            list(workers.map(lambda n: _collect(sessions[n], expected[n], deadline), sorted(expected)))
        for name, reports in sorted(expected.items()):
            for mid, report in reports.items():
                vm = vm_of[mid]
                if report.status is None:
                    silent = f"{vm}: {name}: no migration-feedback within {self.deadline_s:g} s"
                    failed.setdefault(vm, (silent, False))
                elif report.status != "success":
                    failed[vm] = (f"{vm}: {report.reason or name + ': reported fail'}", True)
        mute = [name for name, reports in sorted(expected.items())
                if len(reports) > 1 and all(r.status is None for r in reports.values())]
        return failed, mute

    def _rearm(self, sessions: Mapping[str, DeviceSession], staged: Sequence[str], group_id: str,
               recorder: MigrationRecorder | None = None) -> None:
        """A follow-up confirmed commit (nothing new in the candidate) restarts each pending commit's
        confirm timeout; a device refusing it is left to the verify and confirm, which will say so.
        Journaled before it is sent, as a commit-confirmed under the try's persist-id."""
        timeout_s = self.options.commit.confirm_timeout_s

        def one(name: str) -> None:
            persist = persist_id_for(group_id, name)
            try:
                if recorder is not None:
                    recorder.step(name, JStep.COMMIT_CONFIRMED, persist_id=persist, stage="apply")
                sessions[name].commit(confirmed=True, timeout_s=timeout_s, persist=persist,
                                      persist_id=persist)
            except NetmigError as exc:
                log.warning("batch %s: re-arming the pending commit on %s: %s", self.batch_id, name, exc)

        with ThreadPoolExecutor(max_workers=max(1, min(self.parallelism, len(staged)))) as workers:
            list(workers.map(one, staged))


def _collect(session: DeviceSession, reports: Mapping[str, Report], deadline: float) -> None:
    """Read ``session``'s notifications until every migration in ``reports`` has its migration-feedback
    from this device, or the deadline."""
    waiting = {mid for mid, r in reports.items() if r.status is None}
    while waiting and (left := deadline - time.monotonic()) > 0:
        note = session.next_notification(timeout_s=left)
        if note is None:
            return
        for body in note:
            if not isinstance(body.tag, str) or local_name(body) != "migration-feedback":
                continue
            mid = text_of(body, MIGRATION_NS, "migration-id")
            report = reports.get(mid or "")
            if report is None or report.status is not None:
                continue
            report.status = text_of(body, MIGRATION_NS, "status")
            report.reason = text_of(body, MIGRATION_NS, "reason")
            for count in children(body, MIGRATION_NS, "count"):
                kind = text_of(count, MIGRATION_NS, "kind") or "?"
                report.counts[kind] = int(text_of(count, MIGRATION_NS, "entries") or 0)
            waiting.discard(mid or "")


def report_group(number: int, members: Sequence[PreparedMigration], outcome: GroupOutcome,
                 report: Callable[[VmResult], None]) -> None:
    """Hand each member's result to ``report`` (suspension: the group's time, as in every batch)."""
    for p in members:
        vm = p.plan.vm_id
        error = outcome.errors.get(vm)
        report(VmResult(vm, Outcome.SUCCESS if error is None else Outcome.FAIL, error,
                        outcome.devices.get(vm, ()), number,
                        outcome.suspension_ms.get(vm, outcome.elapsed_ms)))
