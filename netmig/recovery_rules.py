"""Recovery rules: from a journaled migration record to the action recovery takes on each device.

Pure functions, no I/O: :func:`recovery_decision` reads the steps :mod:`netmig.journal` recorded
(write-ahead) and decides, per device, to confirm, cancel, discard, compensate or do nothing;
:func:`decisions` splits a migration into its transactions (apply, cleanup-source) first.
:mod:`netmig.recovery` carries the decision out over NETCONF.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from netmig.journal import MigrationRecord, Step, StepRecord

__all__ = ["DeviceRecovery", "RecoveryAction", "RecoveryDecision", "decisions", "recovery_decision",
           "stage_of"]

CLEANUP_STAGE = "cleanup-source"  # netmig.journal_hook.CLEANUP_STAGE: the source-cleanup transaction


class RecoveryAction(StrEnum):
    """What recovery does to one device."""

    CONFIRM = "confirm"
    CANCEL = "cancel"
    DISCARD = "discard"
    COMPENSATE = "compensate"  # cancel what is pending, then apply the journaled undo as a confirmed commit
    NOTHING = "nothing"



@dataclass(frozen=True, slots=True)
class DeviceRecovery:
    """Recovery's action on one device, with the persist-id it needs and why."""

    device: str
    action: RecoveryAction
    persist_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RecoveryDecision:
    """How to recover a migration: complete it (``complete``) or roll it back, device by device."""

    migration_id: str
    complete: bool
    devices: tuple[DeviceRecovery, ...]
    warnings: tuple[str, ...] = ()

    def action(self, device: str) -> RecoveryAction:
        """The action for ``device``; KeyError if it is not part of the migration."""
        for entry in self.devices:
            if entry.device == device:
                return entry.action
        raise KeyError(device)

    @property
    def consistent(self) -> bool:
        """False when the journal shows a state the transaction should never leave behind."""
        return not self.warnings


def _first(steps: Sequence[StepRecord], kind: Step) -> int | None:
    return next((i for i, s in enumerate(steps) if s.step is kind), None)


def _device_recovery(
    steps: Sequence[StepRecord], device: str, complete: bool, compensating: bool = False
) -> tuple[DeviceRecovery, list[str]]:
    """One device's action from its own steps, given the migration-wide direction."""
    commits = [s for s in steps if s.step is Step.COMMIT_CONFIRMED]
    persist_id = next((s.persist_id for s in reversed(commits) if s.persist_id), None)
    done = {s.step for s in steps if s.ok is True}
    if compensating and commits:
        if Step.COMPENSATE_CONFIRM in done:
            return DeviceRecovery(device, RecoveryAction.NOTHING, persist_id, "compensated"), []
        if Step.CANCEL in done and Step.CONFIRM not in done:
            return DeviceRecovery(device, RecoveryAction.NOTHING, persist_id, "already cancelled"), []
        why = "the migration was being compensated: cancel what is pending, apply the undo"
        return DeviceRecovery(device, RecoveryAction.COMPENSATE, persist_id, why), []
    last_edit = max((i for i, s in enumerate(steps) if s.step is Step.EDIT), default=None)
    discarded = last_edit is not None and any(
        s.step is Step.DISCARD and s.ok is True for s in steps[last_edit + 1 :]
    )
    warnings: list[str] = []
    if complete:
        verified = any(s.step is Step.VERIFY for s in steps) and not any(
            s.step is Step.VERIFY and s.ok is False for s in steps
        )
        if not verified:
            warnings.append(f"{device}: not verified before the first confirm")
        if persist_id is None:
            warnings.append(f"{device}: no commit-confirmed with a persist-id past the point of no return")
            action, reason = RecoveryAction.NOTHING, "nothing pending to confirm"
        elif Step.CONFIRM in done:
            action, reason = RecoveryAction.NOTHING, "already confirmed"
        else:
            action, reason = RecoveryAction.CONFIRM, "past the point of no return"
    elif persist_id is not None:
        if Step.CANCEL in done:
            action, reason = RecoveryAction.NOTHING, "already cancelled"
        else:
            action, reason = RecoveryAction.CANCEL, "commit-confirmed pending before the point of no return"
    elif commits:
        action, reason = RecoveryAction.NOTHING, "confirmed commit without persist-id ended with its session"
    elif last_edit is not None and not discarded:
        action, reason = RecoveryAction.DISCARD, "edited but not committed"
    else:
        action, reason = RecoveryAction.NOTHING, "already discarded" if discarded else "no change made"
    return DeviceRecovery(device, action, persist_id, reason), warnings


def recovery_decision(record: MigrationRecord) -> RecoveryDecision:
    """Decide, from the journaled steps alone, how to recover ``record``; pure, no I/O.

    The rule: the transaction records its first "confirm" only after every device verified, so once
    any confirming commit was recorded (before any "cancel"), some device may already be confirmed
    and completion is the only consistent choice: "confirm" each device's pending commit by its
    persist-id from a new session. Before that point, roll back: "cancel" (cancel-commit by
    persist-id) a device with a commit-confirmed under a persist-id, "discard" a device with edits
    but no commit, "nothing" elsewhere. A step whose result was recorded ok=True (confirm, cancel,
    discard) is not repeated. A commit-confirmed without persist-id was rolled back by the device
    when the coordinator's session died. States the transaction never leaves behind (a device not
    verified, or with nothing to confirm, past the point of no return) are listed in ``warnings``.
    A finished migration needs nothing.

    Compensation: when a confirming commit failed for good after other devices confirmed, the
    transaction records "compensate" on every confirmed device before anything else (before any
    "cancel"), so once any "compensate" is recorded the migration is rolled back whatever else
    the journal shows: a device whose "compensate-confirm" succeeded needs nothing, one whose "cancel"
    succeeded (and never confirmed) needs nothing, every other device that took a commit-confirmed
    gets "compensate": cancel-commit its pending commit (the migration's persist-id, then the undo's
    from "compensate-commit"), whichever is still pending, then apply the journaled undo (removal of
    what the migration added; idempotent) as a confirmed commit verified against running. Devices
    without a commit follow the roll-back rules above.
    """
    if record.finished:
        reason = f"finished: {record.outcome}"
        devices = tuple(DeviceRecovery(d, RecoveryAction.NOTHING, None, reason) for d in record.devices)
        return RecoveryDecision(record.migration_id, record.outcome == "success", devices)
    first_confirm = _first(record.steps, Step.CONFIRM)
    first_cancel = _first(record.steps, Step.CANCEL)
    compensating = _first(record.steps, Step.COMPENSATE) is not None
    complete = not compensating and first_confirm is not None and (
        first_cancel is None or first_confirm < first_cancel)
    decisions: list[DeviceRecovery] = []
    warnings: list[str] = []
    for device in record.devices:
        steps = [s for s in record.steps if s.device == device]
        decision, notes = _device_recovery(steps, device, complete, compensating)
        decisions.append(decision)
        warnings.extend(notes)
    return RecoveryDecision(record.migration_id, complete, tuple(decisions), tuple(warnings))


def stage_of(detail: Mapping[str, object] | None) -> str:
    """The transaction a journaled step belongs to: "apply", or "cleanup-source" (in its detail)."""
    stage = detail.get("stage") if detail else None
    return stage if isinstance(stage, str) else "apply"


_BYSTANDER_ROLES = frozenset({"source", "reporter", "bridge"})
_OBSERVED = frozenset({Step.EXPORT, Step.ASSOCIATE, Step.TRANSFER, Step.FEEDBACK})  # notes; change nothing


def decisions(record: MigrationRecord) -> list[tuple[str, RecoveryDecision]]:
    """One recovery decision per transaction of the migration (apply, then cleanup-source if it began).

    Devices the middle and distributed modes only read from or talk to (an exporting source, a reporter,
    the associate's bridge) are left out when they took no transaction step."""
    roles = record.plan.get("devices")
    role = {name: entry.get("role") for name, entry in roles.items()
            if isinstance(entry, Mapping)} if isinstance(roles, Mapping) else {}
    cleanup = {name for name, r in role.items() if r == CLEANUP_STAGE}
    changed = {s.device for s in record.steps if s.step not in _OBSERVED}
    bystanders = {name for name, r in role.items() if r in _BYSTANDER_ROLES and name not in changed}
    out = []
    for stage in ("apply", CLEANUP_STAGE):
        steps = tuple(s for s in record.steps if stage_of(s.detail) == stage)
        wanted = cleanup if stage == CLEANUP_STAGE else set(record.devices) - cleanup - bystanders
        devices = tuple(d for d in record.devices if d in wanted)
        if devices and (steps or stage == "apply"):
            out.append((stage, recovery_decision(replace(record, devices=devices, steps=steps))))
    return out
