"""Recovery's actions on one device over NETCONF, and what a journaled migration's DI imports were.

:func:`settle` confirms or cancels a pending commit by its persist-id, or discards an abandoned candidate,
telling "already settled" apart; :func:`compensate_group` gives a batch group's device back with the
group's journaled undo; :func:`withdraw_ops` and :func:`di_migrations` name the ``withdraw-di`` a
migration of the middle/distributed modes (or a batch group of those modes: one per VM) needs. Used by
:mod:`netmig.recovery`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from netmig import xmlkit
from netmig.errors import InputError, RpcError
from netmig.journal import Journal, MigrationRecord, Step
from netmig.netconf.session import DeviceSession
from netmig.patience import patient_sessions
from netmig.recovery_plan import ChangeLostError, Check, endpoint_from_plan
from netmig.recovery_rules import RecoveryAction
from netmig.settings import SshPolicy, Timeouts
from netmig.transaction import DeviceChange, NetworkTransaction

__all__ = ["compensate_group", "di_migrations", "gone", "settle", "withdraw_ops"]


def gone(exc: RpcError, action: RecoveryAction) -> bool:
    """Whether the device's answer means our pending commit no longer exists (already settled)."""
    text = " ".join(f"{e.tag} {e.message or ''} {e.info.get('bad-element', '')}" for e in exc.errors).lower()
    if "persist-id" in text or "no confirmed commit" in text or "not pending" in text:
        return True
    return action is RecoveryAction.CANCEL and exc.tag == "operation-failed"


def settle(session: DeviceSession, action: RecoveryAction, persist_id: str | None,
           check: Check | None = None) -> str:
    """Take one recovery action on an open session; returns what happened.

    A confirm answered "no such pending commit" means it was confirmed already, or the device's timer
    rolled it back: with a ``check`` running is read to tell which (ChangeLostError for the latter)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if action is RecoveryAction.CONFIRM:
                try:
                    session.commit(persist_id=persist_id)
                except RpcError as exc:
                    if not gone(exc, action):
                        raise
                    if check is None:
                        return (f"no commit pending with this persist-id ({exc.tag}): confirmed earlier or "
                                "expired; the journal holds nothing to check running against")
                    problems = check(session)
                    if problems:
                        raise ChangeLostError(session.device, problems[0]) from exc
                    return f"already confirmed ({exc.tag}; the device holds the change)"
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
            if action is not RecoveryAction.DISCARD and gone(exc, action):
                return f"already settled ({exc.tag}: {exc.errors[0].message if exc.errors else ''})"
            if exc.tag == "in-use" and time.monotonic() < deadline:  # another migration holds the candidate
                time.sleep(0.2)
                continue
            raise


def withdraw_ops(record: MigrationRecord) -> tuple[xmlkit.Element, ...]:
    """``withdraw-di`` for a migration of the middle/d-push/d-pull modes (devices imported its DI; the
    device removes what those imports created, nothing when there is none), else nothing."""
    if record.mode not in ("middle", "d-push", "d-pull"):
        return ()
    from netmig.modes.middle import withdraw_op

    return tuple(withdraw_op(mid, vm) for mid, vm in di_migrations(record))


def di_migrations(record: MigrationRecord) -> list[tuple[str, str]]:
    """(migration id, VM) under which devices imported the migration's DI: a batch group's VMs each
    carry their own (``di-migration-id`` in the plan's ``group``), a single migration its own."""
    group = record.group
    if group is None:
        return [(record.migration_id, record.vm_id)]
    members = group.get("vms")
    return [(str(m["di-migration-id"]), str(m["vm"])) for m in (members if isinstance(members, list) else [])
            if isinstance(m, Mapping) and "di-migration-id" in m and "vm" in m]


def compensate_group(journal: Journal, record: MigrationRecord, device: str, persist_ids: list[str],
                     entry: Mapping[str, object], detail: Mapping[str, object], *,
                     environ: Mapping[str, str] | None, ssh: SshPolicy, timeouts: Timeouts | None) -> str:
    """Recovery's "compensate" for a batch group's device: cancel what is pending, then apply the group's
    journaled undo (its VMs' removals merged) as a confirmed commit, checked with
    :func:`netmig.batch_merge.still_present`; nothing when running holds none of the group already."""
    from netmig.batch_merge import still_present

    undo_text = entry.get("undo")
    if not isinstance(undo_text, str):
        raise InputError(f"{device}: the journal holds no undo for the group's change; undo it by hand")
    undo = xmlkit.parse(undo_text)
    flt_text = entry.get("filter")
    flt = xmlkit.parse(flt_text) if isinstance(flt_text, str) else None
    endpoint = endpoint_from_plan(record.plan, device, environ)
    said = []
    with DeviceSession(endpoint, ssh=ssh, timeouts=timeouts) as session:
        for pid in persist_ids:
            journal.record(record.migration_id, device, Step.CANCEL, persist_id=pid, detail=detail)
            said.append(settle(session, RecoveryAction.CANCEL, pid))
        if not still_present(session.get_config("running", flt), undo):
            journal.record(record.migration_id, device, Step.COMPENSATE, detail=detail)
            journal.record(record.migration_id, device, Step.COMPENSATE_CONFIRM, ok=True, detail=detail)
            return "; ".join([*said, "running holds none of the group's change: nothing to undo"])
    journal.record(record.migration_id, device, Step.COMPENSATE, detail=detail)
    change = DeviceChange(endpoint, undo, lambda running: still_present(running, undo), verify_filter=flt,
                          extra_ops=withdraw_ops(record))
    NetworkTransaction([change], ssh=ssh, timeouts=timeouts,
                       session_factory=patient_sessions(ssh, timeouts or Timeouts())).run()
    journal.record(record.migration_id, device, Step.COMPENSATE_CONFIRM, ok=True, detail=detail)
    return "; ".join([*said, "the group's undo applied and confirmed"])
