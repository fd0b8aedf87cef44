"""D-PUSH and D-PULL (seed draft section 6): devices move the VM's DI themselves; netmig is the hypervisor.

netmig sends a VDP-style ``vdp-associate`` to the VM's adjacent bridge: with the S-bit at the source
bridge (D-PUSH: source devices push to their partners) or the M-bit at the destination bridge (D-PULL:
destination devices pull from theirs). The draft's weaknesses are fixed here:

- lack of information: the associate carries every partner's address, port and kinds, from the topology,
  and the devices on the bridge's side it must distribute to (``participant``);
- asymmetric layouts: partner relations come from the topology's partner map, not from guessing;
- hard to feedback: the bridge answers with the names and number of devices that will report; netmig
  waits for exactly those ``migration-feedback`` notifications, with a deadline, and names silent ones;
- out of control: every ``di-transferred`` notification goes to the step hook (the journal), destinations
  check support and conflicts before accepting an import, and nothing is final until netmig confirms.

Order: static policies are prepared as in the centralized mode and staged on every receiving destination
with ``commit confirmed`` under the persist-id both netmig and the devices derive from the migration-id;
the devices' imports are follow-up confirmed commits with the same persist-id. When every announced device
reported success, netmig verifies the static part and confirms each destination; otherwise it cancels the
confirmed commit everywhere (the devices would roll back by themselves at the confirm timeout anyway).
A confirming commit that fails for good after others confirmed makes :mod:`netmig.modes.settle` give
every destination back: the confirmed ones are compensated (static undo + ``withdraw-di``).

Another coordinator's migration holds a shared destination while its confirmed commit is pending: our
stage there is refused (``in-use``) or its lock is held. Then everything this attempt staged is cancelled
(so the two never wait on each other) and staging starts over after a jittered pause
(:meth:`netmig.quirks.BusyRetry.again`), until ``options.timeouts.busy_wait_s``; past it the migration
fails naming the busy devices, with nothing staged left behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from netmig.devicegate import holding
from netmig.devices import DeviceHandle, handles_for, open_sessions, ssh_policy_for
from netmig.errors import (
    DeviceError,
    MigrationRolledBackError,
    NetmigError,
    RollbackIncompleteError,
    RpcError,
)
from netmig.feedback import DeviceOutcome, DevicePhase, MigrationResult, Outcome
from netmig.modes.centralized import prepare
from netmig.modes.middle import (
    MIGRATION_NS,
    STATIC_KINDS,
    di_routes,
    rules_into,
    stage_changes,
    vm_port_of,
    withdraw_op,
)
from netmig.modes.settle import Settler, persist_id_for, settle
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.quirks import BUSY_TAGS, BusyRetry
from netmig.topology.model import Topology
from netmig.topology.resolve import MigrationPlan
from netmig.transaction import DeviceChange, StepHook
from netmig.xmlkit import Element, children, element, local_name, sub, text_of

if TYPE_CHECKING:
    from netmig.journal_hook import MigrationRecorder

__all__ = ["Report", "persist_id_for", "run_distributed"]

log = logging.getLogger(__name__)

# How long one staging attempt waits for a candidate another coordinator holds before it gives back what
# it staged and starts over; options.timeouts.busy_wait_s bounds the whole wait.
LOCK_ATTEMPT_WAIT_S = 2.0


@dataclass(slots=True)
class Report:
    """What one announced device said (or did not say) before the deadline."""

    device: str
    status: str | None = None            # success | fail | None (silent)
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    transfers: list[str] = field(default_factory=list)


def _associate(plan: MigrationPlan, options: MigrationOptions, handles: Mapping[str, DeviceHandle],
               migration_id: str, *, push: bool, feedback_deadline_s: float | None = None,
               group_id: str | None = None) -> tuple[str, Element]:
    """The bridge to send the associate to, and the associate itself.

    ``feedback_deadline_s``: how long netmig waits for the devices' migration-feedback; the devices
    stop waiting for a busy partner a little before it, so they report fail in time (None: not sent).
    ``group_id``: the devices' follow-up confirmed commits use the persist-id derived from it, shared
    by every associate of the group (a batch's VMs: :mod:`netmig.batch_distributed`).
    """
    routes = di_routes(plan)
    bridge = plan.source.bridge.name if push else plan.destination.bridge.name
    peers: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for (source, destination), kinds in routes.items():
        me, other = (source, destination) if push else (destination, source)
        peers.setdefault(me, []).append((other, kinds))
    op = element(MIGRATION_NS, "vdp-associate")
    sub(op, MIGRATION_NS, "migration-id", migration_id)
    sub(op, MIGRATION_NS, "vm-id", plan.vm_id)
    if plan.vm is not None:
        for mac in plan.vm.macs:
            sub(op, MIGRATION_NS, "mac", mac)
    sub(op, MIGRATION_NS, "s-bit" if push else "m-bit", "true")

    def partners(parent: Element, device: str) -> None:
        for other, kinds in peers.get(device, ()):
            endpoint = handles[other].endpoint
            entry = sub(parent, MIGRATION_NS, "partner")
            sub(entry, MIGRATION_NS, "name", other)
            sub(entry, MIGRATION_NS, "address", endpoint.host)
            sub(entry, MIGRATION_NS, "port", endpoint.port)
            for kind in kinds:
                sub(entry, MIGRATION_NS, "kind", kind)
            port = vm_port_of(plan, other) if push else None
            if port is not None:
                sub(entry, MIGRATION_NS, "vm-port", port)

    partners(op, bridge)
    for device in sorted(peers):
        if device != bridge:
            part = sub(op, MIGRATION_NS, "participant")
            sub(part, MIGRATION_NS, "name", device)
            partners(part, device)
    if not push:
        sub(op, MIGRATION_NS, "bridge-vm-port", plan.destination.port)
    sub(op, MIGRATION_NS, "confirm-timeout", options.commit.confirm_timeout_s)
    if group_id is not None:
        sub(op, MIGRATION_NS, "group-id", group_id)
    if feedback_deadline_s is not None:  # decimal64, fraction-digits 3, at least 0.001
        sub(op, MIGRATION_NS, "feedback-deadline", f"{max(feedback_deadline_s, 0.001):.3f}")
    rules_into(op, plan, options)
    return bridge, op


def _stage(session: DeviceSession, change: DeviceChange, persist: str, options: MigrationOptions,
           recorder: MigrationRecorder | None = None, lock_wait: BusyRetry | None = None) -> None:
    """Static edit (possibly empty) + commit confirmed with the derived persist-id; unlocked afterwards.

    A candidate another session holds is waited for by ``lock_wait`` (default: not at all). When the
    edit or the commit fails (e.g. ``in-use``: another migration's confirmed commit is pending) the
    candidate is discarded and unlocked before the error is raised, so the device is left to others.
    With a ``recorder`` each step is journaled before it is taken (the commit with its persist-id)."""
    from netmig.journal import Step as JStep

    name = change.endpoint.name
    quirks = change.endpoint.quirks

    def step(kind: JStep, persist_id: str | None = None) -> None:
        if recorder is not None:
            recorder.step(name, kind, persist_id=persist_id, stage="apply")

    step(JStep.LOCK)
    (lock_wait or BusyRetry(0)).run(quirks, lambda: session.lock("candidate"), what=f"{name}: lock",
                                    always=lock_wait is not None)
    try:
        step(JStep.DISCARD)
        session.discard_changes()
        if len(change.edit):
            step(JStep.EDIT)
            session.edit_config("candidate", change.edit)
            if quirks.validate in ("candidate", "inline"):
                step(JStep.VALIDATE)
            if quirks.validate == "candidate":
                session.validate("candidate")
            elif quirks.validate == "inline":
                session.validate(change.edit)
        step(JStep.COMMIT_CONFIRMED, persist)
        session.commit(confirmed=True, timeout_s=options.commit.confirm_timeout_s, persist=persist)
    except NetmigError:
        for undo in (session.discard_changes, lambda: session.unlock("candidate")):
            try:
                undo()
            except NetmigError as exc:
                log.warning("%s: releasing the candidate after a failed stage: %s", name, exc)
        raise
    step(JStep.UNLOCK)
    session.unlock("candidate")


def _busy(exc: NetmigError) -> bool:
    """Whether ``exc`` says another session holds the device (its lock or its pending confirmed commit)."""
    return isinstance(exc, RpcError) and exc.tag in BUSY_TAGS


class _HeldElsewhere(Exception):
    """Every failed stage met a device another coordinator holds; all staged devices were given back."""


def _listen(session: DeviceSession, report: Report, migration_id: str, deadline: float,
            on_step: StepHook | None, recorder: MigrationRecorder | None = None) -> None:
    """Read notifications until this device's migration-feedback for the migration, or the deadline.

    With a ``recorder`` each di-transferred and the migration-feedback are journaled as they arrive."""
    from netmig.journal import Step as JStep

    while (left := deadline - time.monotonic()) > 0:
        note = session.next_notification(timeout_s=left)
        if note is None:
            return
        for body in note:
            if not isinstance(body.tag, str) or text_of(body, MIGRATION_NS, "migration-id") != migration_id:
                continue
            if local_name(body) == "di-transferred":
                line = (f"{text_of(body, MIGRATION_NS, 'from')} -> {text_of(body, MIGRATION_NS, 'to')}: "
                        f"{text_of(body, MIGRATION_NS, 'entries')} entries")
                report.transfers.append(line)
                log.info("migration %s: di-transferred %s", migration_id, line)
                if on_step is not None:
                    on_step(report.device, f"di-transferred {line}")  # type: ignore[arg-type]
                if recorder is not None:
                    recorder.note(report.device, JStep.TRANSFER, ok=True, detail={"transfer": line})
            elif local_name(body) == "migration-feedback":
                report.status = text_of(body, MIGRATION_NS, "status")
                report.reason = text_of(body, MIGRATION_NS, "reason")
                for count in children(body, MIGRATION_NS, "count"):
                    kind = text_of(count, MIGRATION_NS, "kind") or "?"
                    report.counts[kind] = int(text_of(count, MIGRATION_NS, "entries") or 0)
                if recorder is not None:
                    detail: dict[str, object] = {"status": report.status or "?",
                                                 "counts": dict(report.counts)}
                    if report.reason:
                        detail["reason"] = report.reason
                    recorder.note(report.device, JStep.FEEDBACK, ok=report.status == "success", detail=detail)
                return


def run_distributed(plan: MigrationPlan, topology: Topology, options: MigrationOptions, *, migration_id: str,
                    push: bool, environ: Mapping[str, str] | None = None, on_step: StepHook | None = None,
                    deadline_s: float = 30.0, recorder: MigrationRecorder | None = None) -> MigrationResult:
    """Migrate in the d-push (``push``) or d-pull mode; raises a TransactionError subclass on FAIL.

    With a ``recorder`` the migration is journaled (begun after the read-only preparation): every
    device step before it is taken (the confirmed commits with the persist-id derived from the
    migration-id, which the devices' own follow-up commits share, so recovery's cancel-commit undoes
    their imports too), the associate, each transfer and feedback as it arrives, verify and confirm.
    """
    from netmig.journal import Step as JStep
    from netmig.journal_hook import modes_plan
    timings: dict[str, float] = {}
    prepared = prepare(plan, topology, options, environ=environ, on_step=on_step, kinds=STATIC_KINDS)
    timings.update(prepared.timings_ms)
    ssh = ssh_policy_for(topology, options.ssh)
    handles = handles_for((*plan.source_devices, *plan.destination_devices), environ)
    receivers = sorted({d for _, d in di_routes(plan)})
    # compensation: the devices' imports are undone too; one element per device (an element sent is
    # moved into its <rpc>: shared by devices compensated in parallel, two rpcs could end up holding it)
    changes = {c.endpoint.name: replace(c, undo_ops=(withdraw_op(migration_id, plan.vm_id),))
               if c.endpoint.name in receivers else c
               for c in stage_changes(prepared, plan, receivers, environ)}
    reporters_side = [d.name for d in (plan.source_devices if push else plan.destination_devices)]
    needed = sorted(set(changes) | set(reporters_side))
    outcomes: dict[str, DeviceOutcome] = {}
    bridge = plan.source.bridge.name if push else plan.destination.bridge.name
    if recorder is not None:
        roles = {n: "reporter" for n in reporters_side} | {bridge: "bridge"} | dict.fromkeys(changes,
                                                                                          "destination")
        recorder.begin(sorted(roles), modes_plan(prepared, handles, roles, options=options, ssh=ssh,
                                                 persist_ids={n: persist_id_for(migration_id, n)
                                                              for n in changes}))
    # the pending confirmed commits hold each receiving device until settled: migrations of this
    # process queue for those devices (netmig.devicegate) instead of failing on each other's commits
    with holding(handles[n].endpoint for n in changes), \
            open_sessions([handles[n] for n in needed], ssh=ssh, timeouts=options.timeouts) as sessions:
        for name in reporters_side:
            sessions[name].create_subscription()
        started = time.perf_counter()
        staged: list[str] = []
        cancelled: list[str] = []  # staged by an attempt that met a busy device, then given back
        failures: dict[str, str] = {}
        errors: dict[str, NetmigError] = {}
        busy = BusyRetry(options.timeouts.busy_wait_s)
        lock_wait = BusyRetry(min(LOCK_ATTEMPT_WAIT_S, busy.max_wait_s), min_interval_s=0.05)

        def stage(name: str) -> None:
            try:
                _stage(sessions[name], changes[name], persist_id_for(migration_id, name), options, recorder,
                       lock_wait)
                staged.append(name)
            except NetmigError as exc:
                failures[name], errors[name] = str(exc), exc
                if recorder is not None:
                    recorder.note(name, JStep.COMMIT_CONFIRMED, ok=False, detail={"error": str(exc)})

        def stage_all() -> None:
            """Stage every destination; when only busy devices failed, cancel what was staged (so the
            other coordinator is not kept waiting on us) and raise for BusyRetry.again to start over."""
            staged.clear()
            failures.clear()
            errors.clear()
            with ThreadPoolExecutor(max_workers=max(1, min(16, len(changes)))) as workers:
                list(workers.map(stage, sorted(changes)))
            if not errors or not all(_busy(e) for e in errors.values()):
                return
            undone = settle(sessions, sorted(staged), migration_id, confirm=False, recorder=recorder)
            for name in [n for n in staged if n not in undone]:
                staged.remove(name)
                cancelled.append(name)
            if not undone:
                raise _HeldElsewhere(sorted(errors))
            failures.update(undone)  # not given back: settled below like any failure

        try:
            busy.again(stage_all, busy=lambda exc: isinstance(exc, _HeldElsewhere),
                       what=f"migration {migration_id}: stage")
        except _HeldElsewhere:
            held_for = f"held by another session for more than {busy.max_wait_s:g} s (another migration?)"
            failures = {n: f"{e} ({held_for})" for n, e in failures.items()}
        timings["stage"] = (time.perf_counter() - started) * 1000
        reports: dict[str, Report] = {}
        if not failures:
            started = time.perf_counter()
            bridge, op = _associate(plan, options, handles, migration_id, push=push,
                                    feedback_deadline_s=deadline_s)
            try:
                if recorder is not None:
                    recorder.note(bridge, JStep.ASSOCIATE, detail={"bit": "s" if push else "m"})
                reply = sessions[bridge].rpc(op)
                announced = [(e.text or "").strip()
                             for e in children(reply, MIGRATION_NS, "reporting-device")]
                expected = int(text_of(reply, MIGRATION_NS, "expected-reports") or -1)
                if expected != len(announced) or not set(announced) <= set(sessions):
                    raise DeviceError(sessions[bridge].device, f"vdp-associate: bridge announced {announced} "
                                                               f"but expects {expected} reports")
                if recorder is not None:
                    recorder.note(bridge, JStep.ASSOCIATE, ok=True, detail={"reporting": announced})
                deadline = time.monotonic() + deadline_s
                reports = {n: Report(n) for n in announced}
                with ThreadPoolExecutor(max_workers=max(1, len(announced))) as workers:
                    list(workers.map(lambda n: _listen(sessions[n], reports[n], migration_id, deadline,
                                                       on_step, recorder), announced))
            except NetmigError as exc:
                failures[bridge] = str(exc)
            timings["transfer"] = (time.perf_counter() - started) * 1000
            for report in reports.values():
                if report.status is None:
                    failures[report.device] = (f"{report.device}: no migration-feedback within "
                                               f"{deadline_s:g} s")
                elif report.status != "success":
                    failures[report.device] = report.reason or f"{report.device}: reported fail"
        if not failures:
            started = time.perf_counter()
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
            timings["verify"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        settler = Settler(sessions, changes, migration_id, options, recorder=recorder, on_step=on_step,
                           factory=lambda ep: DeviceSession(ep, ssh=ssh, timeouts=options.timeouts))
        if failures:
            settler.give_back([], staged)
            settle_errors = {n: "; ".join(settler.notes.get(n, ())) for n, p in settler.phases.items()
                             if p is DevicePhase.ROLLBACK_FAILED}
            timings["cancel"] = (time.perf_counter() - started) * 1000
        else:
            settle_errors = settler.confirm(staged)
            timings["confirm"] = (time.perf_counter() - started) * 1000
            if settle_errors:  # failed for good after others confirmed: give every device back
                started = time.perf_counter()
                settler.give_back([n for n in staged if n not in settle_errors], sorted(settle_errors))
                timings["compensate"] = (time.perf_counter() - started) * 1000
                failures = dict(settle_errors)
                stuck = sorted(n for n, p in settler.phases.items()
                               if p in (DevicePhase.CONFIRMED, DevicePhase.ROLLBACK_FAILED))
                settle_errors = {n: failures.get(n) or "; ".join(settler.notes.get(n, ())) for n in stuck}
    for name in sorted(changes):
        ok = not failures and name not in settle_errors
        phase = settler.phases.get(name) or (
            DevicePhase.CONFIRMED if ok else DevicePhase.ROLLBACK_FAILED if name in settle_errors
            else DevicePhase.ROLLED_BACK if name in staged or name in cancelled else DevicePhase.DISCARDED)
        said = (failures.get(name) or settle_errors.get(name), *settler.notes.get(name, ()))
        error = "; ".join(e for e in said if e) or None
        outcomes[name] = DeviceOutcome(name, phase, ok, error)
    for name, report in reports.items():
        if name not in outcomes:
            outcomes[name] = DeviceOutcome(name, DevicePhase.DONE if report.status == "success"
                                           else DevicePhase.PENDING, report.status == "success",
                                           failures.get(name))
    result = tuple(outcomes[n] for n in sorted(outcomes))
    if recorder is not None and not failures and not settle_errors:
        recorder.applied = True
    if failures or settle_errors:
        silent = sorted(r.device for r in reports.values() if r.status is None)
        what = "; ".join(failures[n] for n in sorted(failures))
        if settle_errors and failures:
            raise RollbackIncompleteError(f"migration failed ({what}) and giving back failed: devices "
                                          "confirmed and not compensated, or not rolled back, keep the "
                                          "change",
                                          sorted(settle_errors), result)
        if settle_errors:
            raise RollbackIncompleteError("confirming commit failed", sorted(settle_errors), result)
        tail = f" (silent: {', '.join(silent)})" if silent else ""
        undone = len(set(staged) | set(cancelled))
        raise MigrationRolledBackError(f"migration rolled back on {undone} device(s): {what}{tail}",
                                       result)
    moved = dict(prepared.moved)
    for report in reports.values():
        for kind, n in report.counts.items():
            moved[kind] = max(moved.get(kind, 0), n)
    return MigrationResult(migration_id, plan.vm_id, options.mode.value, Outcome.SUCCESS, result, moved, (),
                           timings, prepared.conflicts)
