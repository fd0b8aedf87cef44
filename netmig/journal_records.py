"""The journal's record types and its storage contract: what a journaled migration looks like.

:class:`Step` names the steps of the network-wide transaction, :class:`StepRecord` and
:class:`MigrationRecord` are what a journal hands back, and :class:`Journal` is the small protocol the
transaction and recovery write and read through (:class:`netmig.journal_sqlite.SqliteJournal` today, a
server database when several coordinators share one journal). The errors a journal raises live here
too. Pure data, no I/O; import everything from :mod:`netmig.journal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from netmig.errors import InputError, NetmigError

__all__ = [
    "Journal",
    "JournalError",
    "MigrationFinishedError",
    "MigrationInProgressError",
    "MigrationRecord",
    "Step",
    "StepRecord",
    "UnknownMigrationError",
    "group_vms",
]


class Step(StrEnum):
    """The steps of the network-wide transaction, as the journal names them."""

    LOCK = "lock"
    DISCARD = "discard"
    EDIT = "edit"
    VALIDATE = "validate"
    COMMIT_CONFIRMED = "commit-confirmed"
    VERIFY = "verify"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    UNLOCK = "unlock"
    # compensation: a confirmed device undone by its own confirmed commit after another device's
    # confirming commit failed for good (see recovery_decision)
    COMPENSATE = "compensate"                  # discard + edit-config of the undo
    COMPENSATE_COMMIT = "compensate-commit"    # its commit confirmed; persist_id: the undo's own
    COMPENSATE_VERIFY = "compensate-verify"
    COMPENSATE_CONFIRM = "compensate-confirm"  # ok=True: the device is back where it was
    # the middle and distributed modes (issue 4); they change nothing by themselves, recovery ignores them
    EXPORT = "export"              # middle: a source's opaque DI blob stored (detail: digest, entry count)
    ASSOCIATE = "associate"        # d-push/d-pull: the vdp-associate sent to the bridge
    TRANSFER = "di-transferred"    # d-push/d-pull: a device says it moved DI to its partner
    FEEDBACK = "feedback"          # d-push/d-pull: a device's migration-feedback (ok: its status)


def group_vms(group: object) -> list[str]:
    """The VM ids of a journal plan's ``group`` entry (a batch group); none when it is not one."""
    members = group.get("vms") if isinstance(group, Mapping) else None
    if not isinstance(members, list):
        return []
    return [str(m["vm"]) for m in members if isinstance(m, Mapping) and "vm" in m]


class JournalError(NetmigError):
    """The journal's storage failed (cannot open, disk I/O, schema from a newer netmig)."""


class MigrationInProgressError(InputError):
    """Another unfinished migration of the same VM is journaled; two migrations of one VM are refused."""

    def __init__(self, vm_id: str, migration_id: str) -> None:
        self.vm_id = vm_id
        self.migration_id = migration_id
        super().__init__(f"VM {vm_id}: migration {migration_id} is unfinished (recover it first)")


class UnknownMigrationError(InputError):
    """No migration with this id is journaled."""

    def __init__(self, migration_id: str) -> None:
        self.migration_id = migration_id
        super().__init__(f"migration {migration_id}: not in the journal")


class MigrationFinishedError(InputError):
    """The migration is already finished or recovered; its record is sealed."""

    def __init__(self, migration_id: str) -> None:
        self.migration_id = migration_id
        super().__init__(f"migration {migration_id}: already finished")


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One journaled step. ``ok`` is None for the write-ahead record, True/False for a recorded result."""

    seq: int
    device: str
    step: Step
    at: datetime
    persist_id: str | None = None
    detail: Mapping[str, object] | None = None
    ok: bool | None = None


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    """A journaled migration with its steps in the order they were recorded."""

    migration_id: str
    vm_id: str
    mode: str
    source_host: str
    destination_host: str
    devices: tuple[str, ...]
    plan: Mapping[str, object]
    started_at: datetime
    steps: tuple[StepRecord, ...] = ()
    finished_at: datetime | None = None
    outcome: str | None = None
    summary: Mapping[str, object] | None = None
    recovered: bool = False
    recovery_note: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the migration ended (by itself or through recovery)."""
        return self.finished_at is not None

    @property
    def last_steps(self) -> dict[str, StepRecord]:
        """Each device's most recent step (devices with no step are absent)."""
        return {s.device: s for s in self.steps}

    @property
    def group(self) -> Mapping[str, object] | None:
        """A batch group's ``group`` plan entry (batch id, number, VMs); None for one VM's migration."""
        group = self.plan.get("group")
        return group if isinstance(group, Mapping) else None

    @property
    def vms(self) -> tuple[str, ...]:
        """The VMs this migration moves: a batch group's members, else its one VM."""
        group = self.group
        return (self.vm_id,) if group is None else tuple(group_vms(group))

    @property
    def persist_ids(self) -> dict[str, str]:
        """Each device's most recent persist-id (from its commit-confirmed)."""
        return {s.device: s.persist_id for s in self.steps if s.persist_id is not None}


class Journal(Protocol):
    """What the transaction and recovery need from a journal; SQLite today, a server database later."""

    def begin(
        self,
        migration_id: str,
        vm_id: str,
        mode: str,
        source_host: str,
        destination_host: str,
        devices: Sequence[str],
        plan: Mapping[str, object],
    ) -> None: ...

    def record(
        self,
        migration_id: str,
        device: str,
        step: Step | str,
        *,
        persist_id: str | None = None,
        detail: Mapping[str, object] | None = None,
        ok: bool | None = None,
    ) -> None: ...

    def finish(self, migration_id: str, outcome: str, summary: Mapping[str, object]) -> None: ...

    def get(self, migration_id: str) -> MigrationRecord: ...

    def unfinished(self) -> list[MigrationRecord]: ...

    def history(self, limit: int = 50, vm_id: str | None = None) -> list[MigrationRecord]: ...

    def mark_recovered(self, migration_id: str, outcome: str, note: str) -> None: ...

    def close(self) -> None: ...
