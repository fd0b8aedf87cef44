"""Adapter from the transaction's steps to journal records, and the journal plan of a migration.

:class:`MigrationRecorder` journals one migration: ``begin`` with the plan recovery and rollback need,
one write-ahead record per transaction step (through the hook :meth:`MigrationRecorder.stage` returns),
the results that matter to recovery (a confirm, cancel or discard that succeeded, the step that failed),
and ``finish``. The plan names devices by endpoint and by the environment variable holding their
password, never the password itself.

Test hook: when the environment variable ``NETMIG_TEST_KILL_AT`` is set to ``device:step:n`` (a journal
step name such as ``b-leaf1:commit-confirmed:1``), the process SIGKILLs itself right after recording the
n-th such step: a write-ahead step, or a note (export, associate, di-transferred, feedback and the
middle/distributed modes' other observations; a note's results are counted too). It is read once per
recorder and is inert unless set; the SIGKILL tests use it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netmig.feedback import DeviceOutcome, DevicePhase
from netmig.journal import Journal
from netmig.journal import Step as JStep
from netmig.model.bundle import to_dict
from netmig.transaction import Step, StepHook
from netmig.xmlkit import to_bytes

if TYPE_CHECKING:
    from netmig.codecs.base import VmContext
    from netmig.devices import DeviceHandle
    from netmig.modes.centralized import PreparedMigration
    from netmig.options import MigrationOptions
    from netmig.settings import SshPolicy

__all__ = [
    "CLEANUP_STAGE",
    "KILL_ENV",
    "MigrationRecorder",
    "StageHook",
    "coordinator_identity",
    "device_entry",
    "journal_plan",
    "modes_plan",
]

log = logging.getLogger(__name__)

KILL_ENV = "NETMIG_TEST_KILL_AT"
CLEANUP_STAGE = "cleanup-source"

# The transaction's steps as the journal names them; connect and check-capabilities change nothing.
_JOURNAL_STEP: dict[Step, JStep] = {
    Step.LOCK: JStep.LOCK,
    Step.DISCARD: JStep.DISCARD,
    Step.EDIT: JStep.EDIT,
    Step.VALIDATE: JStep.VALIDATE,
    Step.COMMIT_CONFIRMED: JStep.COMMIT_CONFIRMED,
    Step.VERIFY: JStep.VERIFY,
    Step.CONFIRM: JStep.CONFIRM,
    Step.UNLOCK: JStep.UNLOCK,
    Step.CANCEL_COMMIT: JStep.CANCEL,
    Step.ROLLBACK_DISCARD: JStep.DISCARD,
    Step.COMPENSATE: JStep.COMPENSATE,
    Step.COMPENSATE_COMMIT: JStep.COMPENSATE_COMMIT,
    Step.COMPENSATE_VERIFY: JStep.COMPENSATE_VERIFY,
    Step.COMPENSATE_CONFIRM: JStep.COMPENSATE_CONFIRM,
}
_FORWARD = (Step.LOCK, Step.DISCARD, Step.EDIT, Step.VALIDATE, Step.COMMIT_CONFIRMED, Step.VERIFY,
            Step.CONFIRM, Step.UNLOCK)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def coordinator_identity() -> dict[str, object]:
    """Who runs this migration: host, pid and the pid's start time (recovery skips live coordinators)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid-start": _process_start(pid)}


def coordinator_alive(plan: Mapping[str, object]) -> bool:
    """Whether the coordinator named in a journal plan is still running on this host."""
    who = plan.get("coordinator")
    if not isinstance(who, Mapping) or who.get("host") != socket.gethostname():
        return False
    pid = who.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = who.get("pid-start")
    return started is None or _process_start(pid) == started


def device_entry(handle: DeviceHandle, role: str) -> dict[str, object]:
    """How recovery reaches a device: endpoint, login user and the *name* of its password variable."""
    ep, creds = handle.endpoint, handle.device.credentials
    quirks = ep.quirks
    return {"host": ep.host, "port": ep.port, "username": creds.username, "login-env": creds.password_env,
            "key-file": str(creds.key_file) if creds.key_file else None, "codec": handle.device.codec.value,
            "role": role, "quirks": {"validate": quirks.validate,
                                     "confirmed-timer-needs-quiet-s": quirks.confirmed_timer_needs_quiet_s,
                                     "commit-blocked-while-confirm-pending":
                                         quirks.commit_blocked_while_confirm_pending}}


def context_entry(ctx: VmContext) -> dict[str, object]:
    return {"vm-id": ctx.vm_id, "port": ctx.port, "macs": list(ctx.macs), "ips": list(ctx.ips),
            "tenant": ctx.tenant, "vlan": ctx.vlan}


def journal_plan(prepared: PreparedMigration, handles: Mapping[str, DeviceHandle],
                 cleanup: Mapping[str, VmContext], *, options: MigrationOptions, ssh: SshPolicy,
                 persist_ids: Mapping[str, str]) -> dict[str, object]:
    """What recovery and rollback need, as JSON: endpoints, what each destination took, source bundles."""
    changed = {c.endpoint.name for c in prepared.changes}
    undo = {c.endpoint.name: to_bytes(c.undo).decode() for c in prepared.changes if c.undo is not None}
    devices = {name: device_entry(handles[name], "destination") for name in sorted(changed)}
    devices.update({name: device_entry(handles[name], CLEANUP_STAGE) for name in sorted(cleanup)})
    return {
        "coordinator": coordinator_identity(),
        "known-hosts": str(ssh.known_hosts) if ssh.known_hosts else None,
        "verify-host-keys": ssh.verify_host_keys,
        "confirm-timeout-s": options.commit.confirm_timeout_s,
        "cleanup-source": bool(cleanup),
        "devices": devices,
        "persist-ids": dict(persist_ids),
        "destinations": {name: {"context": context_entry(prepared.contexts[name]),
                                "sent": to_dict(prepared.sent[name]),
                                **({"undo": undo[name]} if name in undo else {})}
                         for name in sorted(changed)},
        "sources": {name: {"context": context_entry(ctx), "pulled": to_dict(prepared.pulled[name])}
                    for name, ctx in sorted(cleanup.items())},
    }


def modes_plan(prepared: PreparedMigration, handles: Mapping[str, DeviceHandle], roles: Mapping[str, str], *,
               options: MigrationOptions, ssh: SshPolicy, persist_ids: Mapping[str, str],
               store: Mapping[str, str] | None = None) -> dict[str, object]:
    """:func:`journal_plan` for the middle and distributed modes: also every other device they touch
    (``roles``: DI receivers without a static change, reporters, the bridge), so recovery can reach them.

    A destination that takes DI only (no static change: nothing in running to check) is listed under
    ``di-only`` with the VM id: recovery asks it with ``export-di`` whether it holds the VM's learned
    state. ``store`` is where the middle mode keeps the migration's blobs (netmig.store.location_of):
    recovery drops them once it settled the migration."""
    plan = journal_plan(prepared, handles, {}, options=options, ssh=ssh, persist_ids=persist_ids)
    devices = plan["devices"]
    assert isinstance(devices, dict)
    for name, role in sorted(roles.items()):
        devices.setdefault(name, device_entry(handles[name], role))
    static = {c.endpoint.name for c in prepared.changes}
    di_only = sorted(n for n, role in roles.items() if role == "destination" and n not in static)
    plan["di-only"] = {name: {"vm-id": prepared.plan.vm_id, "evidence": "export-di"} for name in di_only}
    if store is not None:
        plan["di-store"] = dict(store)
    return plan


@dataclass(slots=True)
class StageHook:
    """The ``on_step`` hook of one transaction: journals each step, then passes it on (progress)."""

    recorder: MigrationRecorder
    stage: str
    then: StepHook | None = None
    persist_ids: Mapping[str, str] = field(default_factory=dict)
    compensate_ids: Mapping[str, str] = field(default_factory=dict)  # the undo commits' persist-ids
    _last: dict[str, Step] = field(default_factory=dict)

    def __call__(self, device: str, step: Step) -> None:
        kind = _JOURNAL_STEP.get(step)
        if kind is not None:
            previous = self._last.get(device)
            if previous is Step.CONFIRM and step in (Step.UNLOCK, Step.COMPENSATE):
                self.recorder.result(device, JStep.CONFIRM, ok=True, stage=self.stage)
            self._last[device] = step
            persist = self.persist_ids.get(device) if step is Step.COMMIT_CONFIRMED else None
            if step is Step.COMPENSATE_COMMIT:
                persist = self.compensate_ids.get(device)
            self.recorder.step(device, kind, persist_id=persist, stage=self.stage)
        if self.then is not None:
            self.then(device, step)

    def results(self, outcomes: tuple[DeviceOutcome, ...]) -> None:
        """Journal how each device ended: the settling steps that succeeded, the step that failed."""
        for outcome in outcomes:
            last = self._last.get(outcome.device)
            phase = outcome.phase_reached
            if phase in (DevicePhase.CONFIRMED, DevicePhase.DONE) and last is Step.CONFIRM:
                self.recorder.result(outcome.device, JStep.CONFIRM, ok=True, stage=self.stage)
            elif phase is DevicePhase.DONE and last is Step.UNLOCK:
                self.recorder.result(outcome.device, JStep.UNLOCK, ok=True, stage=self.stage)
            elif phase is DevicePhase.ROLLED_BACK:
                self.recorder.result(outcome.device, JStep.CANCEL, ok=True, stage=self.stage)
            elif phase is DevicePhase.COMPENSATED:
                self.recorder.result(outcome.device, JStep.COMPENSATE_CONFIRM, ok=True, stage=self.stage)
            elif phase is DevicePhase.DISCARDED:
                self.recorder.result(outcome.device, JStep.DISCARD, ok=True, stage=self.stage)
            if outcome.error and last in _FORWARD:
                self.recorder.result(outcome.device, _JOURNAL_STEP[last], ok=False, stage=self.stage,
                                     error=outcome.error)


class MigrationRecorder:
    """Journals one migration; thread-safe (the transaction calls hooks from worker threads)."""

    def __init__(self, journal: Journal, migration_id: str, *, vm_id: str, mode: str, source_host: str,
                 destination_host: str, environ: Mapping[str, str] | None = None) -> None:
        self.journal = journal
        self.migration_id = migration_id
        self.vm_id = vm_id
        self.mode = mode
        self.source_host = source_host
        self.destination_host = destination_host
        self.begun = False
        self.applied = False  # set once the destinations' transaction is confirmed everywhere
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        env = os.environ if environ is None else environ
        self._kill_at = env.get(KILL_ENV) or None  # test hook, see the module docstring

    def begin(self, devices: list[str], plan: Mapping[str, object]) -> None:
        """Journal the migration before the first change (raises MigrationInProgressError)."""
        self.journal.begin(self.migration_id, self.vm_id, self.mode, self.source_host, self.destination_host,
                           devices, plan)
        self.begun = True

    def stage(self, stage: str, then: StepHook | None = None) -> StageHook:
        """A hook for one transaction; set its ``persist_ids`` from the transaction before running it."""
        return StageHook(self, stage, then)

    def step(self, device: str, step: JStep, *, persist_id: str | None, stage: str) -> None:
        if not self.begun:
            return
        detail = {"stage": stage} if stage != "apply" else None
        self.journal.record(self.migration_id, device, step, persist_id=persist_id, detail=detail)
        self._kill_point(device, step)

    def _kill_point(self, device: str, step: JStep) -> None:
        """The test hook (module docstring): SIGKILL this process at the chosen journaled step."""
        if self._kill_at is None:
            return
        with self._lock:
            key = (device, step.value)
            self._counts[key] = count = self._counts.get(key, 0) + 1
        if self._kill_at == f"{device}:{step.value}:{count}":
            log.warning("test hook %s: killing this process after journaling %s", KILL_ENV, self._kill_at)
            os.kill(os.getpid(), signal.SIGKILL)

    def result(self, device: str, step: JStep, *, ok: bool, stage: str, error: str | None = None) -> None:
        if not self.begun:
            return
        detail: dict[str, object] = {"stage": stage} if stage != "apply" else {}
        if error is not None:
            detail["error"] = error
        self.journal.record(self.migration_id, device, step, ok=ok, detail=detail or None)

    def note(self, device: str, step: JStep, *, ok: bool | None = None,
             detail: Mapping[str, object] | None = None) -> None:
        """Journal what a device reported or what netmig observed (export, associate, transfer, feedback)."""
        if self.begun:
            self.journal.record(self.migration_id, device, step, ok=ok, detail=detail)
            self._kill_point(device, step)

    def finish(self, outcome: str, summary: Mapping[str, object]) -> None:
        if self.begun:
            self.journal.finish(self.migration_id, outcome, summary)
