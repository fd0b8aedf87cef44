"""Recovery of interrupted migrations, and rollback of completed ones.

:func:`recover` finds unfinished journaled migrations whose coordinator is gone and settles each device as
:func:`netmig.recovery_rules.recovery_decision` says, from a new session: ``commit`` with the
persist-id (confirm) or ``cancel-commit`` with it (cancel), or discard an abandoned candidate. A
persist-id the device no longer knows means the step already happened, or the device reverted by itself
before we came: before confirming, and when a confirm is answered so, running is read and checked
against what the migration sent (the journaled plan; a destination that took only DI is asked with
``export-di`` whether it holds entries of the VM). A device that lost the change means the migration
cannot be completed: recovery then rolls every other device back (cancel what is pending, compensate
what is confirmed) and the migration ends "rolled-back". A second run does nothing. Each action is
journaled before and after it is taken. A settled middle-mode migration's blobs leave the transfer store.

:func:`rollback_migration` undoes a completed migration in one confirmed transaction: it removes what the
destinations took and restores the source's entries when ``--cleanup-source`` removed them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from netmig import xmlkit
from netmig.codecs.base import DeviceCodec, Element, VmContext
from netmig.codecs.registry import get_codec
from netmig.errors import (
    InputError,
    NetmigError,
    RollbackIncompleteError,
    TransactionError,
)
from netmig.feedback import DeviceOutcome
from netmig.journal import Journal, MigrationFinishedError, MigrationRecord, Step
from netmig.journal_hook import CLEANUP_STAGE, MigrationRecorder, coordinator_alive, coordinator_identity
from netmig.model import VmBundle
from netmig.model.bundle import from_dict
from netmig.netconf.session import DeviceSession
from netmig.patience import patient_sessions
from netmig.recovery_plan import (
    ChangeLostError,
    context_from_plan,
    endpoint_from_plan,
    holding_check,
    ssh_from_plan,
)
from netmig.recovery_plan import (
    plan_mapping as _mapping,
)
from netmig.recovery_rules import RecoveryAction, RecoveryDecision, decisions, stage_of
from netmig.recovery_settle import compensate_group, di_migrations, settle, withdraw_ops
from netmig.settings import CommitPolicy, SshPolicy, Timeouts
from netmig.store import drop_at
from netmig.transaction import DeviceChange, NetworkTransaction, StepHook

__all__ = [
    "ChangeLostError",
    "RecoveryReport",
    "RollbackResult",
    "endpoint_from_plan",
    "holding_check",
    "recover",
    "recover_now",
    "rollback_migration",
    "ssh_from_plan",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery did to one migration."""

    migration_id: str
    vm_id: str
    outcome: str                      # "success" (completed) or "rolled-back"; "" when left unfinished
    actions: tuple[str, ...]          # "device: action: result" lines
    errors: tuple[str, ...] = ()
    skipped: str | None = None        # why the migration was left alone
    vms: tuple[str, ...] = ()         # the VMs it moves (a batch group's members; else vm_id alone)

    @property
    def ok(self) -> bool:
        return not self.errors and self.skipped is None


def _lost_before_confirm(record: MigrationRecord, decision: RecoveryDecision,
                         environ: Mapping[str, str] | None, ssh: SshPolicy,
                         timeouts: Timeouts | None) -> dict[str, str]:
    """Devices to be confirmed whose running config already lacks the change (their pending commit
    expired), read before anything is confirmed; each with the first problem found."""
    lost = {}
    for dev in decision.devices:
        check = (holding_check(record.plan, dev.device, record.migration_id)
                 if dev.action is RecoveryAction.CONFIRM else None)
        if check is None:
            continue
        with DeviceSession(endpoint_from_plan(record.plan, dev.device, environ), ssh=ssh,
                           timeouts=timeouts) as session:
            problems = check(session)
        if problems:
            lost[dev.device] = str(ChangeLostError(dev.device, problems[0]))
    return lost


def _roll_back_lost(journal: Journal, record: MigrationRecord, decision: RecoveryDecision,
                    lost: Mapping[str, str], detail: Mapping[str, object], *,
                    environ: Mapping[str, str] | None, ssh: SshPolicy,
                    timeouts: Timeouts | None) -> tuple[list[str], list[str]]:
    """The migration cannot be completed (``lost`` devices rolled back by themselves): journal that,
    then undo every other device that took a commit (cancel what is pending, compensate what is
    confirmed). Returns action and error lines."""
    actions, errors = [], []
    for device, why in sorted(lost.items()):  # first, so an interrupted run goes on rolling back
        journal.record(record.migration_id, device, Step.CONFIRM, ok=False, detail={**detail, "error": why})
        journal.record(record.migration_id, device, Step.COMPENSATE, detail=detail)
        journal.record(record.migration_id, device, Step.COMPENSATE_CONFIRM, ok=True, detail=detail)
        actions.append(f"{device}: lost the change: {why}")
    for dev in decision.devices:
        if dev.device in lost or dev.persist_id is None:
            continue
        try:
            result = _compensate(journal, record, dev.device, dev.persist_id, detail, environ=environ,
                                 ssh=ssh, timeouts=timeouts)
            actions.append(f"{dev.device}: roll back: {result}")
        except (NetmigError, KeyError, ValueError) as exc:
            errors.append(f"{dev.device}: roll back failed: {exc}")
    return actions, errors


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
        lost: dict[str, str] = {}
        if stage == "apply" and complete:
            try:
                lost = _lost_before_confirm(record, decision, environ, policy, timeouts)
            except (NetmigError, KeyError, ValueError) as exc:
                errors.append(f"reading running before confirming failed: {exc}")
                break
        for dev in decision.devices:
            if lost:
                break
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
                check = holding_check(record.plan, dev.device, record.migration_id) if stage == "apply" \
                    else None
                with DeviceSession(endpoint, ssh=policy, timeouts=timeouts) as session:
                    result = settle(session, dev.action, dev.persist_id, check)
                journal.record(record.migration_id, dev.device, step, ok=True, detail=detail)
                actions.append(f"{dev.device}: {dev.action.value}: {result}")
            except ChangeLostError as exc:  # its timer expired between our read and our confirm
                lost[dev.device] = str(exc)
            except (NetmigError, KeyError, ValueError) as exc:
                errors.append(f"{dev.device}: {dev.action.value} failed: {exc}")
        if lost:  # cannot be completed: roll everything back, the migration fails
            complete = False
            done, failed = _roll_back_lost(journal, record, decision, lost, detail, environ=environ,
                                           ssh=policy, timeouts=timeouts)
            actions.extend(done)
            errors.extend(failed)
            break
    if errors:
        return RecoveryReport(record.migration_id, record.vm_id, "", tuple(actions), tuple(errors),
                              vms=record.vms)
    outcome = "success" if complete else "rolled-back"
    note = "recovered: " + ("completed" if complete else "rolled back") + "; " + "; ".join(actions)
    try:
        journal.mark_recovered(record.migration_id, outcome, note[:4000])
    except MigrationFinishedError:
        return RecoveryReport(record.migration_id, record.vm_id, outcome, tuple(actions),
                              skipped="another recovery sealed it first", vms=record.vms)
    actions.extend(_drop_blobs(record))
    return RecoveryReport(record.migration_id, record.vm_id, outcome, tuple(actions), vms=record.vms)


def _drop_blobs(record: MigrationRecord) -> list[str]:
    """The middle mode's blobs of a migration recovery settled, dropped from the transfer store the plan
    journals (``di-store``); what was done, as action lines (a failure is a warning: the migration is
    settled, the blobs are only left-over bytes)."""
    location = record.plan.get("di-store")
    if location is None:
        return []
    try:
        dropped = sum(drop_at(location, mid) for mid, _vm in di_migrations(record))
    except NetmigError as exc:
        log.warning("migration %s: its DI blobs stay in the transfer store: %s", record.migration_id, exc)
        return [f"warning: the transfer store keeps the migration's blobs: {exc}"]
    return [f"transfer store: dropped {dropped} blob(s) of the migration"] if dropped else []


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
    if device not in _mapping(plan.get("destinations"), "destinations"):
        return _cancel_only(journal, record, device, [p for p in (persist_id, *undo_ids) if p], detail,
                            environ=environ, ssh=ssh, timeouts=timeouts)
    entry = _mapping(_mapping(plan.get("destinations"), "destinations").get(device), f"destinations/{device}")
    if "edit" in entry:  # a batch group: its merged edit and undo, as XML
        return compensate_group(journal, record, device, [p for p in (persist_id, *undo_ids) if p], entry,
                                 detail, environ=environ, ssh=ssh, timeouts=timeouts)
    codec = get_codec(str(_mapping(_mapping(plan.get("devices"), "devices").get(device), device)["codec"]))
    ctx = context_from_plan(entry)
    sent = from_dict(VmBundle, _mapping(entry.get("sent"), f"destinations/{device}/sent"))
    endpoint = endpoint_from_plan(plan, device, environ)
    said = []
    with DeviceSession(endpoint, ssh=ssh, timeouts=timeouts) as session:
        for pid in [p for p in (persist_id, *undo_ids) if p]:
            journal.record(record.migration_id, device, Step.CANCEL, persist_id=pid, detail=detail)
            said.append(settle(session, RecoveryAction.CANCEL, pid))
        absent = _absent(codec, sent, ctx)
        if _static(sent) and not absent(session.get_config("running", codec.config_filter(ctx))):
            journal.record(record.migration_id, device, Step.COMPENSATE, detail=detail)
            journal.record(record.migration_id, device, Step.COMPENSATE_CONFIRM, ok=True, detail=detail)
            return "; ".join([*said, "running holds none of the change: nothing to undo"])
        undo_text = entry.get("undo")
        undo = (xmlkit.parse(undo_text) if isinstance(undo_text, str)
                else codec.encode_removal(sent, ctx, current=session.get_config("running")))
    journal.record(record.migration_id, device, Step.COMPENSATE, detail=detail)
    change = DeviceChange(endpoint, undo, absent, verify_filter=codec.config_filter(ctx),
                          extra_ops=withdraw_ops(record))  # the modes' DI: withdraw-di
    NetworkTransaction([change], ssh=ssh, timeouts=timeouts,
                       session_factory=patient_sessions(ssh, timeouts or Timeouts())).run()
    journal.record(record.migration_id, device, Step.COMPENSATE_CONFIRM, ok=True, detail=detail)
    return "; ".join([*said, "undo applied and confirmed"])


def _cancel_only(journal: Journal, record: MigrationRecord, device: str, persist_ids: list[str],
                 detail: Mapping[str, object], *, environ: Mapping[str, str] | None, ssh: SshPolicy,
                 timeouts: Timeouts | None) -> str:
    """Compensate a device the plan journals no undo for (a DI-only receiver of the middle/distributed
    modes): cancelling its pending commit undoes it; a confirmed one cannot be undone by recovery."""
    said = []
    endpoint = endpoint_from_plan(record.plan, device, environ)
    with DeviceSession(endpoint, ssh=ssh, timeouts=timeouts) as session:
        for pid in persist_ids:
            journal.record(record.migration_id, device, Step.CANCEL, persist_id=pid, detail=detail)
            said.append(settle(session, RecoveryAction.CANCEL, pid))
    withdraw = withdraw_ops(record)
    if "cancelled" not in said and withdraw:  # confirmed (or expired) DI: the device withdraws its imports
        journal.record(record.migration_id, device, Step.COMPENSATE, detail=detail)
        NetworkTransaction([DeviceChange(endpoint, xmlkit.element(xmlkit.NC_NS, "config"), lambda _r: [],
                                         extra_ops=withdraw)], ssh=ssh, timeouts=timeouts,
                           session_factory=patient_sessions(ssh, timeouts or Timeouts())).run()
        journal.record(record.migration_id, device, Step.COMPENSATE_CONFIRM, ok=True, detail=detail)
        return "; ".join([*said, "withdraw-di confirmed"])
    if "cancelled" not in said:
        raise InputError(f"{device}: nothing of the migration was pending and the journal holds no undo for "
                         "what it took; undo it by hand")
    journal.record(record.migration_id, device, Step.CANCEL, ok=True, detail=detail)
    return "; ".join(said)


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
                                          skipped="its coordinator is still running", vms=record.vms))
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


def _static(bundle: VmBundle) -> bool:
    """Whether ``bundle`` holds any static (configured, not learned) entry."""
    return any(bundle.entries(kind) for kind in bundle.kinds() if not kind.is_dynamic)


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
    if record.group is not None:
        raise InputError(f"{mid} is a batch group ({len(record.vms)} VMs): a group cannot be rolled back "
                         "as a whole yet; migrate its VMs back")
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
    return sorted({s.device for s in record.steps if stage_of(s.detail) == CLEANUP_STAGE
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
