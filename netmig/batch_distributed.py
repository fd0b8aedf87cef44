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
follow-up commits of the devices that took it, next to its static edit in the group's. So a VM whose
transfer fails (fail report, silence past the deadline, an associate refused) fails its whole group:
everything the group staged is cancelled on every device (the devices' imports with it), the sources
are untouched, and every VM of the group is FAIL, the ones whose transfer failed with their reason, the
others naming them. Groups before and after are independent.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from netmig.batch import VmResult
from netmig.batch_middle import with_merged_undo
from netmig.change import DeviceChange
from netmig.devicegate import holding
from netmig.devices import DeviceHandle, handles_for, open_sessions
from netmig.errors import DeviceError, NetmigError
from netmig.feedback import DevicePhase, Outcome
from netmig.modes.centralized import PreparedMigration
from netmig.modes.distributed import LOCK_ATTEMPT_WAIT_S, Report, _associate, _stage
from netmig.modes.middle import MIGRATION_NS, di_routes, withdraw_op
from netmig.modes.settle import Settler, persist_id_for
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.quirks import BusyRetry
from netmig.settings import SshPolicy
from netmig.xmlkit import Element, children, element, local_name, text_of

__all__ = ["DistributedBatch", "GroupOutcome", "report_group"]

log = logging.getLogger(__name__)
_NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


def _nothing(running: Element) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What became of one group: per VM the error (None: moved), and the devices each VM's move used."""

    errors: Mapping[str, str | None]
    devices: Mapping[str, tuple[str, ...]]
    elapsed_ms: float


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

    def commit_group(self, number: int, members: Sequence[PreparedMigration],
                     changes: Sequence[DeviceChange]) -> GroupOutcome:
        """Move the group's VMs (``changes``: its merged static changes, one per device)."""
        started = time.perf_counter()
        group_id = f"{self.batch_id}-g{number}"
        mids = {p.plan.vm_id: f"{group_id}-{n}" for n, p in enumerate(members)}
        handles: dict[str, DeviceHandle] = {}
        for p in members:
            for name, handle in handles_for((*p.plan.source_devices, *p.plan.destination_devices),
                                            self.environ).items():
                handles.setdefault(name, handle)
        staged_changes, devices = self._changes(members, changes, mids, handles)
        reporters = sorted({d.name for p in members
                            for d in (p.plan.source_devices if self.push else p.plan.destination_devices)})
        needed = sorted(set(staged_changes) | set(reporters))
        errors: dict[str, str | None] = dict.fromkeys(mids)
        try:
            with holding(handles[n].endpoint for n in staged_changes), \
                    open_sessions([handles[n] for n in needed], ssh=self.ssh,
                                  timeouts=self.options.timeouts) as sessions:
                self._run(number, group_id, members, staged_changes, mids, handles, sessions, reporters,
                          errors)
        except NetmigError as exc:  # sessions could not be opened or subscribed: nothing was staged
            for vm in mids:
                errors[vm] = errors[vm] or f"{type(exc).__name__}: group {number}: {exc}"
        return GroupOutcome(errors, devices, (time.perf_counter() - started) * 1000)

    def _changes(self, members: Sequence[PreparedMigration], changes: Sequence[DeviceChange],
                 mids: Mapping[str, str], handles: Mapping[str, DeviceHandle],
                 ) -> tuple[dict[str, DeviceChange], dict[str, tuple[str, ...]]]:
        """Per destination: the merged static change with the merged undo and one withdraw-di per VM
        receiving DI there (an empty edit on a DI-only device); per VM the devices it uses."""
        receivers: dict[str, list[str]] = {}
        devices: dict[str, tuple[str, ...]] = {}
        for p in members:
            vm = p.plan.vm_id
            takes = sorted({d for _, d in di_routes(p.plan)})
            for name in takes:
                receivers.setdefault(name, []).append(vm)
            devices[vm] = tuple(sorted({c.endpoint.name for c in p.changes} | set(takes)))
        by_name = {c.endpoint.name: with_merged_undo(c, members) for c in changes}
        for name, vms in receivers.items():
            base = by_name.get(name) or DeviceChange(handles[name].endpoint, element(_NC_NS, "config"),
                                                     _nothing)
            undoable = not len(base.edit) or base.undo is not None  # withdraw-di alone is no static undo
            withdraws = tuple(withdraw_op(mids[vm], vm) for vm in vms)
            by_name[name] = replace(base, undo_ops=(*base.undo_ops, *withdraws) if undoable
                                    else base.undo_ops)
        return dict(sorted(by_name.items())), devices

    def _run(self, number: int, group_id: str, members: Sequence[PreparedMigration],
             changes: Mapping[str, DeviceChange], mids: Mapping[str, str],
             handles: Mapping[str, DeviceHandle], sessions: Mapping[str, DeviceSession],
             reporters: Sequence[str], errors: dict[str, str | None]) -> None:
        opts = self.options
        where = f"group {number} ({len(members)} VMs)"
        for name in reporters:
            sessions[name].create_subscription()
        staged, failures = self._stage_all(changes, sessions, group_id)
        try:
            if not failures:
                failed_vms = self._transfer(members, handles, sessions, mids, group_id, staged)
                for vm, reason in failed_vms.items():
                    errors[vm] = f"transfer failed: {reason}"
                if failed_vms:
                    names = sorted(failed_vms)
                    failures["transfer"] = (f"{len(names)} VM(s) failed their transfer "
                                            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
            if not failures:
                for name in staged:
                    change = changes[name]
                    mismatches = change.verify(sessions[name].get_config("running", change.verify_filter))
                    if mismatches:
                        failures[name] = f"{name}: verify: running lacks the change: {mismatches[0]}"
        except NetmigError as exc:  # a session failed after staging: everything staged is given back
            failures["error"] = f"{type(exc).__name__}: {exc}"
        settler = Settler(sessions, changes, group_id, opts, recorder=None, on_step=None,
                          factory=lambda ep: DeviceSession(ep, ssh=self.ssh, timeouts=opts.timeouts))
        if failures:
            settler.give_back([], staged)
            stuck = sorted(n for n, p in settler.phases.items() if p is DevicePhase.ROLLBACK_FAILED)
            tail = f"; NOT rolled back on {', '.join(stuck)}" if stuck else ""
            what = "; ".join(failures[k] for k in sorted(failures))
            for vm in errors:
                errors[vm] = (f"MigrationRolledBackError: {where} rolled back: {errors[vm] or what}{tail}")
            log.info("batch %s: %s rolled back: %s", self.batch_id, where, what)
            return
        settle_errors = settler.confirm(staged)
        if settle_errors:  # failed for good after others confirmed: give every device back
            settler.give_back([n for n in staged if n not in settle_errors], sorted(settle_errors))
            stuck = sorted(n for n, p in settler.phases.items()
                           if p in (DevicePhase.CONFIRMED, DevicePhase.ROLLBACK_FAILED))
            what = "; ".join(f"{n}: {settle_errors[n]}" for n in sorted(settle_errors))
            kind = "RollbackIncompleteError" if stuck else "MigrationRolledBackError"
            tail = f"; keep the change: {', '.join(stuck)}" if stuck else ""
            for vm in errors:
                errors[vm] = f"{kind}: {where}: confirming commit failed ({what}){tail}"

    def _stage_all(self, changes: Mapping[str, DeviceChange], sessions: Mapping[str, DeviceSession],
                   group_id: str) -> tuple[list[str], dict[str, str]]:
        """Stage every destination in parallel; on any failure the staged ones are cancelled at once.
        The staged devices (still pending) and the failures."""
        opts = self.options
        staged: list[str] = []
        failures: dict[str, str] = {}
        lock_wait = BusyRetry(min(LOCK_ATTEMPT_WAIT_S, opts.timeouts.busy_wait_s), min_interval_s=0.05)

        def stage(name: str) -> None:
            try:
                _stage(sessions[name], changes[name], persist_id_for(group_id, name), opts, None, lock_wait)
                staged.append(name)
            except NetmigError as exc:
                failures[name] = f"{name}: stage: {exc}"

        with ThreadPoolExecutor(max_workers=max(1, min(16, len(changes)))) as workers:
            list(workers.map(stage, sorted(changes)))
        return sorted(staged), failures

    def _transfer(self, members: Sequence[PreparedMigration], handles: Mapping[str, DeviceHandle],
                  sessions: Mapping[str, DeviceSession], mids: Mapping[str, str], group_id: str,
                  staged: Sequence[str]) -> dict[str, str]:
        """Associate every VM, ``wave`` at a time; the VMs whose transfer failed, with the reason (the
        first wave with a failure is the last)."""
        armed = time.monotonic()
        for start in range(0, len(members), max(1, self.wave)):
            failed = self._wave(members[start:start + self.wave], sessions, handles, mids, group_id)
            if failed:
                return failed
            if time.monotonic() - armed > self.options.commit.confirm_timeout_s / 3:
                self._rearm(sessions, staged, group_id)
                armed = time.monotonic()
        return {}

    def _wave(self, wave: Sequence[PreparedMigration], sessions: Mapping[str, DeviceSession],
              handles: Mapping[str, DeviceHandle], mids: Mapping[str, str], group_id: str) -> dict[str, str]:
        failed: dict[str, str] = {}
        expected: dict[str, dict[str, Report]] = {}   # reporting device -> migration id -> its report
        vm_of = {mids[p.plan.vm_id]: p.plan.vm_id for p in wave}
        for p in wave:
            vm = p.plan.vm_id
            bridge, op = _associate(p.plan, self.options, handles, mids[vm], push=self.push,
                                    feedback_deadline_s=self.deadline_s, group_id=group_id)
            try:
                reply = sessions[bridge].rpc(op)
                announced = [(e.text or "").strip()
                             for e in children(reply, MIGRATION_NS, "reporting-device")]
                count = int(text_of(reply, MIGRATION_NS, "expected-reports") or -1)
                if count != len(announced) or not set(announced) <= set(sessions):
                    raise DeviceError(sessions[bridge].device, f"vdp-associate: bridge announced {announced} "
                                                               f"but expects {count} reports")
            except NetmigError as exc:
                failed[vm] = f"{vm}: {exc}"
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
                    failed.setdefault(vm, f"{vm}: {name}: no migration-feedback within {self.deadline_s:g} s")
                elif report.status != "success":
                    failed.setdefault(vm, f"{vm}: {report.reason or name + ': reported fail'}")
        return failed

    def _rearm(self, sessions: Mapping[str, DeviceSession], staged: Sequence[str], group_id: str) -> None:
        """A follow-up confirmed commit (nothing new in the candidate) restarts each pending commit's
        confirm timeout; a device refusing it is left to the verify and confirm, which will say so."""
        timeout_s = self.options.commit.confirm_timeout_s

        def one(name: str) -> None:
            persist = persist_id_for(group_id, name)
            try:
                sessions[name].commit(confirmed=True, timeout_s=timeout_s, persist=persist,
                                      persist_id=persist)
            except NetmigError as exc:
                log.warning("batch %s: re-arming the pending commit on %s: %s", self.batch_id, name, exc)

        with ThreadPoolExecutor(max_workers=max(1, min(16, len(staged)))) as workers:
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
                        outcome.devices.get(vm, ()), number, outcome.elapsed_ms))
