"""Recovery of interrupted migrations, rollback of completed ones, and sessions that wait for a busy device.

:func:`recover` finds unfinished journaled migrations whose coordinator is gone and settles each device as
:func:`netmig.recovery_rules.recovery_decision` says, from a new session: ``commit`` with the
persist-id (confirm) or ``cancel-commit`` with it (cancel), or discard an abandoned candidate. A
persist-id the device no longer knows means the step already happened (or the device reverted by itself
before we came), so recovery is idempotent: a second run does nothing. Each action is journaled before
and after it is taken.

:func:`rollback_migration` undoes a completed migration in one confirmed transaction: it removes what the
destinations took and restores the source's entries when ``--cleanup-source`` removed them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from netmig import xmlkit
from netmig.codecs.base import DeviceCodec, Element, VmContext
from netmig.codecs.registry import get_codec
from netmig.errors import (
    InputError,
    NetmigError,
    RollbackIncompleteError,
    RpcError,
    TransactionError,
)
from netmig.feedback import DeviceOutcome
from netmig.journal import Journal, MigrationFinishedError, MigrationRecord, Step
from netmig.journal_hook import CLEANUP_STAGE, MigrationRecorder, coordinator_alive, coordinator_identity
from netmig.model import VmBundle
from netmig.model.bundle import from_dict
from netmig.netconf.session import DeviceSession
from netmig.patience import patient_sessions
from netmig.recovery_rules import RecoveryAction, RecoveryDecision, recovery_decision
from netmig.settings import CommitPolicy, Credentials, DeviceEndpoint, QuirkProfile, SshPolicy, Timeouts
from netmig.transaction import DeviceChange, NetworkTransaction, StepHook

__all__ = [
    "RecoveryReport",
    "RollbackResult",
    "endpoint_from_plan",
    "recover",
    "recover_now",
    "rollback_migration",
    "ssh_from_plan",
]

log = logging.getLogger(__name__)

def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InputError(f"journal plan: {where} is missing or not an object")
    return value


def endpoint_from_plan(plan: Mapping[str, object], device: str,
                       environ: Mapping[str, str] | None = None) -> DeviceEndpoint:
    """The endpoint of ``device`` from a journal plan; the password is read from the variable it names."""
    import os

    entry = _mapping(_mapping(plan.get("devices"), "devices").get(device), f"devices/{device}")
    env = os.environ if environ is None else environ
    var = entry.get("login-env")
    password = env.get(var) if isinstance(var, str) else None
    if isinstance(var, str) and not password:
        raise InputError(f"{device}: environment variable {var} is not set; it must hold the password")
    key_file = entry.get("key-file")
    quirks = _mapping(entry.get("quirks", {}), f"devices/{device}/quirks")
    return DeviceEndpoint(device, str(entry["host"]), int(str(entry["port"])),
                          Credentials(str(entry["username"]), password,
                                      Path(key_file) if isinstance(key_file, str) else None),
                          QuirkProfile(validate=str(quirks.get("validate", "candidate")),  # type: ignore[arg-type]
                                       confirmed_timer_needs_quiet_s=float(
                                           str(quirks.get("confirmed-timer-needs-quiet-s", 0))),
                                       commit_blocked_while_confirm_pending=bool(
                                           quirks.get("commit-blocked-while-confirm-pending", False))))


def ssh_from_plan(plan: Mapping[str, object], base: SshPolicy | None = None) -> SshPolicy:
    """The SSH policy the migration used: its known_hosts unless the caller names one."""
    known = plan.get("known-hosts")
    policy = base or SshPolicy()
    if policy.known_hosts is None and isinstance(known, str):
        policy = replace(policy, known_hosts=Path(known))
    if plan.get("verify-host-keys") is False:
        policy = replace(policy, verify_host_keys=False)
    return policy


def context_from_plan(entry: Mapping[str, object]) -> VmContext:
    ctx = _mapping(entry.get("context"), "context")
    macs, ips = ctx.get("macs") or [], ctx.get("ips") or []
    vlan, tenant = ctx.get("vlan"), ctx.get("tenant")
    return VmContext(str(ctx["vm-id"]), str(ctx.get("port") or ""),
                     macs=tuple(str(m) for m in macs) if isinstance(macs, list) else (),
                     ips=tuple(str(a) for a in ips) if isinstance(ips, list) else (),
                     tenant=tenant if isinstance(tenant, str) else None,
                     vlan=vlan if isinstance(vlan, int) else None)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery did to one migration."""

    migration_id: str
    vm_id: str
    outcome: str                      # "success" (completed) or "rolled-back"; "" when left unfinished
    actions: tuple[str, ...]          # "device: action: result" lines
    errors: tuple[str, ...] = ()
    skipped: str | None = None        # why the migration was left alone

    @property
    def ok(self) -> bool:
        return not self.errors and self.skipped is None


def _stage_of(detail: Mapping[str, object] | None) -> str:
    stage = detail.get("stage") if detail else None
    return stage if isinstance(stage, str) else "apply"


def decisions(record: MigrationRecord) -> list[tuple[str, RecoveryDecision]]:
    """One recovery decision per transaction of the migration (apply, then cleanup-source if it began)."""
    roles = record.plan.get("devices")
    cleanup = {name for name, entry in roles.items() if isinstance(entry, Mapping)
               and entry.get("role") == CLEANUP_STAGE} if isinstance(roles, Mapping) else set()
    out = []
    for stage in ("apply", CLEANUP_STAGE):
        steps = tuple(s for s in record.steps if _stage_of(s.detail) == stage)
        wanted = cleanup if stage == CLEANUP_STAGE else set(record.devices) - cleanup
        devices = tuple(d for d in record.devices if d in wanted)
        if devices and (steps or stage == "apply"):
            out.append((stage, recovery_decision(replace(record, devices=devices, steps=steps))))
    return out


def _gone(exc: RpcError, action: RecoveryAction) -> bool:
    """Whether the device's answer means our pending commit no longer exists (already settled)."""
    text = " ".join(f"{e.tag} {e.message or ''} {e.info.get('bad-element', '')}" for e in exc.errors).lower()
    if "persist-id" in text or "no confirmed commit" in text or "not pending" in text:
        return True
    return action is RecoveryAction.CANCEL and exc.tag == "operation-failed"


def _settle(session: DeviceSession, action: RecoveryAction, persist_id: str | None) -> str:
    """Take one recovery action on an open session; returns what happened."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if action is RecoveryAction.CONFIRM:
                session.commit(persist_id=persist_id)
                return "confirmed"
            if action is RecoveryAction.CANCEL:
                session.cancel_commit(persist_id)
                return "cancelled"
            try:
                session.lock("candidate")
            except RpcError as exc:
                if exc.tag == "lock-denied":  # our session ended, so its candidate was already discarded
                    return "candidate held by another session; ours was discarded when it ended"
                raise
            try:
                session.discard_changes()
            finally:
                session.unlock("candidate")
            return "discarded"
        except RpcError as exc:
            if action is not RecoveryAction.DISCARD and _gone(exc, action):
                return f"already settled ({exc.tag}: {exc.errors[0].message if exc.errors else ''})"
            if exc.tag == "in-use" and time.monotonic() < deadline:  # another migration holds the candidate
                time.sleep(0.2)
                continue
            raise


def _recover_one(journal: Journal, record: MigrationRecord, environ: Mapping[str, str] | None,
                 ssh: SshPolicy | None, timeouts: Timeouts | None) -> RecoveryReport:
    actions: list[str] = []
    errors: list[str] = []
    complete = False
    policy = ssh_from_plan(record.plan, ssh)
    for stage, decision in decisions(record):
        if stage == "apply":
            complete = decision.complete
        for warning in decision.warnings:
            actions.append(f"warning: {warning}")
        detail = {"stage": stage, "by": "recovery"} if stage != "apply" else {"by": "recovery"}
        for dev in decision.devices:
            if dev.action is RecoveryAction.NOTHING:
                actions.append(f"{dev.device}: nothing ({dev.reason})")
                continue
            if dev.action is RecoveryAction.COMPENSATE:
                try:
                    result = _compensate(journal, record, dev.device, dev.persist_id, detail, environ=environ,
                                         ssh=policy, timeouts=timeouts)
                    actions.append(f"{dev.device}: compensate: {result}")
                except (NetmigError, KeyError, ValueError) as exc:
                    errors.append(f"{dev.device}: compensate failed: {exc}")
                continue
            step = {RecoveryAction.CONFIRM: Step.CONFIRM, RecoveryAction.CANCEL: Step.CANCEL,
                    RecoveryAction.DISCARD: Step.DISCARD}[dev.action]
            try:
                journal.record(record.migration_id, dev.device, step, persist_id=dev.persist_id,
                               detail=detail)
                endpoint = endpoint_from_plan(record.plan, dev.device, environ)
                with DeviceSession(endpoint, ssh=policy, timeouts=timeouts) as session:
                    result = _settle(session, dev.action, dev.persist_id)
                journal.record(record.migration_id, dev.device, step, ok=True, detail=detail)
                actions.append(f"{dev.device}: {dev.action.value}: {result}")
            except (NetmigError, KeyError, ValueError) as exc:
                errors.append(f"{dev.device}: {dev.action.value} failed: {exc}")
    if errors:
        return RecoveryReport(record.migration_id, record.vm_id, "", tuple(actions), tuple(errors))
    outcome = "success" if complete else "rolled-back"
    note = "recovered: " + ("completed" if complete else "rolled back") + "; " + "; ".join(actions)
    try:
        journal.mark_recovered(record.migration_id, outcome, note[:4000])
    except MigrationFinishedError:
        return RecoveryReport(record.migration_id, record.vm_id, outcome, tuple(actions),
                              skipped="another recovery sealed it first")
    return RecoveryReport(record.migration_id, record.vm_id, outcome, tuple(actions))


def _compensate(journal: Journal, record: MigrationRecord, device: str, persist_id: str | None,
                detail: Mapping[str, object], *, environ: Mapping[str, str] | None, ssh: SshPolicy,
                timeouts: Timeouts | None) -> str:
    """Recovery's "compensate" (recovery_rules.recovery_decision): cancel whatever of ours is pending on the
    device (the migration's commit, then the undo's), then apply the journaled undo as one confirmed
    commit verified against running. Removal is idempotent, so this is safe on a device that is
    already undone; each step is journaled before it is taken."""
    plan = record.plan
    undo_ids = [s.persist_id for s in record.steps if s.device == device and s.persist_id
                and s.step is Step.COMPENSATE_COMMIT]
    entry = _mapping(_mapping(plan.get("destinations"), "destinations").get(device), f"destinations/{device}")
    codec = get_codec(str(_mapping(_mapping(plan.get("devices"), "devices").get(device), device)["codec"]))
    ctx = context_from_plan(entry)
    sent = from_dict(VmBundle, _mapping(entry.get("sent"), f"destinations/{device}/sent"))
    endpoint = endpoint_from_plan(plan, device, environ)
    said = []
    with DeviceSession(endpoint, ssh=ssh, timeouts=timeouts) as session:
        for pid in [p for p in (persist_id, *undo_ids) if p]:
            journal.record(record.migration_id, device, Step.CANCEL, persist_id=pid, detail=detail)
            said.append(_settle(session, RecoveryAction.CANCEL, pid))
        undo_text = entry.get("undo")
        undo = (xmlkit.parse(undo_text) if isinstance(undo_text, str)
                else codec.encode_removal(sent, ctx, current=session.get_config("running")))
    journal.record(record.migration_id, device, Step.COMPENSATE, detail=detail)
    change = DeviceChange(endpoint, undo, _absent(codec, sent, ctx), verify_filter=codec.config_filter(ctx))
    NetworkTransaction([change], ssh=ssh, timeouts=timeouts,
                       session_factory=patient_sessions(ssh, timeouts or Timeouts())).run()
    journal.record(record.migration_id, device, Step.COMPENSATE_CONFIRM, ok=True, detail=detail)
    return "; ".join([*said, "undo applied and confirmed"])


def _touches(record: MigrationRecord) -> set[str]:
    devices = record.plan.get("devices")
    return set(record.devices) | (set(devices) if isinstance(devices, Mapping) else set())


def recover(journal: Journal, *, environ: Mapping[str, str] | None = None,
            devices: set[str] | None = None, include_live: bool = False, ssh: SshPolicy | None = None,
            timeouts: Timeouts | None = None) -> list[RecoveryReport]:
    """Settle every unfinished migration whose coordinator is gone (touching ``devices``, if given).

    A migration whose coordinator process is still running on this host is left alone (it is not
    interrupted, just in progress) unless ``include_live``.
    """
    reports = []
    for record in journal.unfinished():
        if devices is not None and not (_touches(record) & devices):
            continue
        if not include_live and coordinator_alive(record.plan):
            reports.append(RecoveryReport(record.migration_id, record.vm_id, "", (),
                                          skipped="its coordinator is still running"))
            continue
        log.warning("recovering interrupted migration %s of VM %s", record.migration_id, record.vm_id)
        reports.append(_recover_one(journal, record, environ, ssh, timeouts))
    return reports


def recover_now(journal: Journal, migration_id: str, *, environ: Mapping[str, str] | None = None,
                ssh: SshPolicy | None = None, timeouts: Timeouts | None = None) -> RecoveryReport:
    """Settle one unfinished migration now, even though its coordinator (this process) is alive."""
    return _recover_one(journal, journal.get(migration_id), environ, ssh, timeouts)


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """A completed rollback: its own journal id, what it undid and how each device ended."""

    migration_id: str
    rollback_of: str
    vm_id: str
    devices: tuple[DeviceOutcome, ...]
    restored_sources: tuple[str, ...]


def _absent(codec: DeviceCodec, sent: VmBundle, ctx: VmContext) -> Callable[[Element], list[str]]:
    """Verify that running no longer holds the static entries a migration added."""
    def verify(running: Element) -> list[str]:
        have = codec.decode(running, None, ctx)
        problems = []
        for kind in sorted(sent.kinds(), key=lambda k: k.value):
            left = set(sent.entries(kind)) & set(have.entries(kind))
            if left and not kind.is_dynamic:
                problems.append(f"{kind.value}: {len(left)} entries still in running")
        return problems
    return verify


def _check_rollback_allowed(journal: Journal, record: MigrationRecord) -> None:
    mid = record.migration_id
    if not record.finished:
        raise InputError(f"migration {mid} is unfinished: run netmig recover first")
    if record.mode == "rollback":
        raise InputError(f"{mid} is itself a rollback (of {record.plan.get('rollback-of')})")
    if record.outcome != "success":
        raise InputError(f"migration {mid} ended {record.outcome}: nothing to roll back")
    for later in journal.history(limit=10000, vm_id=record.vm_id):
        if later.migration_id == mid:
            break
        if later.mode == "rollback" and later.plan.get("rollback-of") == mid and later.outcome == "success":
            raise InputError(f"migration {mid} was already rolled back by {later.migration_id}")
        if later.mode != "rollback" and later.outcome == "success":
            raise InputError(f"VM {record.vm_id} was migrated again by {later.migration_id} after {mid}; "
                             "roll that one back first")


def _cleaned_sources(record: MigrationRecord) -> list[str]:
    """Source devices whose cleanup-source commit was confirmed (by the migration or by recovery)."""
    return sorted({s.device for s in record.steps if _stage_of(s.detail) == CLEANUP_STAGE
                   and s.step is Step.CONFIRM and s.ok is True})


def rollback_migration(journal: Journal, migration_id: str, *, environ: Mapping[str, str] | None = None,
                       ssh: SshPolicy | None = None, timeouts: Timeouts | None = None,
                       commit: CommitPolicy | None = None, rollback_id: str | None = None,
                       on_step: StepHook | None = None) -> RollbackResult:
    """Undo a completed migration in one confirmed transaction, journaled as a migration of mode "rollback".

    Removes from each destination what the migration added, and restores the source's entries on
    every device ``--cleanup-source`` had cleaned.
    """
    from netmig.modes.centralized import verifier

    record = journal.get(migration_id)
    _check_rollback_allowed(journal, record)
    plan = record.plan
    policy = ssh_from_plan(plan, ssh)
    entries = _mapping(plan.get("devices"), "devices")
    changes: list[DeviceChange] = []
    for name, raw in sorted(_mapping(plan.get("destinations", {}), "destinations").items()):
        entry = _mapping(raw, f"destinations/{name}")
        codec = get_codec(str(_mapping(entries.get(name), name)["codec"]))
        ctx = context_from_plan(entry)
        sent = from_dict(VmBundle, _mapping(entry.get("sent"), f"destinations/{name}/sent"))
        endpoint = endpoint_from_plan(plan, name, environ)
        with DeviceSession(endpoint, ssh=policy, timeouts=timeouts) as session:
            # the whole running config: encode_removal must see every real of a group to tell it empties it
            current = session.get_config("running")
        changes.append(DeviceChange(endpoint, codec.encode_removal(sent, ctx, current=current),
                                    _absent(codec, sent, ctx), verify_filter=codec.config_filter(ctx)))
    restored = _cleaned_sources(record)
    sources = _mapping(plan.get("sources", {}), "sources")
    for name in restored:
        entry = _mapping(sources.get(name), f"sources/{name}")
        codec = get_codec(str(_mapping(entries.get(name), name)["codec"]))
        ctx = context_from_plan(entry)
        pulled = from_dict(VmBundle, _mapping(entry.get("pulled"), f"sources/{name}/pulled"))
        changes.append(DeviceChange(endpoint_from_plan(plan, name, environ), codec.encode(pulled, ctx),
                                    verifier(codec, pulled, ctx), verify_filter=codec.config_filter(ctx)))
    if not changes:
        raise InputError(f"migration {migration_id} changed no device: nothing to roll back")
    rid = rollback_id or "rb-" + secrets.token_hex(6)
    recorder = MigrationRecorder(journal, rid, vm_id=record.vm_id, mode="rollback",
                                 source_host=record.destination_host, destination_host=record.source_host)
    hook = recorder.stage("apply", on_step)
    txn = NetworkTransaction(changes, ssh=policy, timeouts=timeouts, commit=commit, on_step=hook,
                             session_factory=patient_sessions(policy, timeouts or Timeouts()))
    hook.persist_ids = txn.persist_ids
    names = [c.endpoint.name for c in changes]
    devices = {n: {**_mapping(entries.get(n), n), "role": "destination"} for n in names}
    recorder.begin(names, {"rollback-of": migration_id, "coordinator": coordinator_identity(),
                           "known-hosts": plan.get("known-hosts"),
                           "verify-host-keys": policy.verify_host_keys, "devices": devices,
                           "persist-ids": dict(txn.persist_ids)})
    try:
        outcomes = txn.run()
    except RollbackIncompleteError as exc:
        hook.results(exc.outcomes)
        recover_now(journal, rid, environ=environ, ssh=ssh, timeouts=timeouts)
        raise
    except TransactionError as exc:
        hook.results(exc.outcomes)
        recorder.finish("rolled-back", {"error": str(exc)})
        raise
    hook.results(outcomes)
    recorder.finish("success", {"rollback-of": migration_id, "restored-sources": restored})
    log.info("rollback %s undid migration %s of %s", rid, migration_id, record.vm_id)
    return RollbackResult(rid, migration_id, record.vm_id, outcomes, tuple(restored))
