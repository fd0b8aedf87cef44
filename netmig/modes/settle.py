"""Settling the distributed modes' destinations: confirm each, or give every device back.

The d-push and d-pull modes stage each destination with ``commit confirmed`` under a persist-id both
netmig and the devices derive from the migration-id (:func:`persist_id_for`), outside a
:class:`~netmig.transaction.NetworkTransaction`. :class:`Settler` confirms them (a failed confirm is
retried from new sessions until the confirm timeout); when one fails for good after others confirmed,
it compensates the confirmed ones (static undo + ``withdraw-di``, with :func:`netmig.compensation.compensate`)
and cancels the failed ones, as the transaction's own give-back does. Every step is journaled.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netmig.change import DeviceChange, SessionFactory, Step, StepHook
from netmig.compensation import Held, compensate, confirm_again, give_back_failed
from netmig.errors import NetmigError
from netmig.feedback import DevicePhase
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.quirks import BusyRetry

if TYPE_CHECKING:
    from netmig.journal_hook import MigrationRecorder

__all__ = ["Settler", "persist_id_for", "settle"]

log = logging.getLogger(__name__)


def persist_id_for(migration_id: str, device: str) -> str:
    """The persist-id of a migration's confirmed commits on ``device`` (netconf-sim derives the same)."""
    return "nm-" + hashlib.sha256(f"{migration_id}/{device}".encode()).hexdigest()[:32]


def settle(sessions: Mapping[str, DeviceSession], names: Sequence[str], migration_id: str, *,
            confirm: bool, recorder: MigrationRecorder | None = None,
            retry: Callable[[str, NetmigError], None] | None = None) -> dict[str, str]:
    """Confirm (or cancel) the pending confirmed commit on each device; errors by device.

    A confirming commit that fails is handed to ``retry`` (which raises when it fails for good).
    Journaled before (write-ahead, with the persist-id) and after (the result) each device's step."""
    from netmig.journal import Step as JStep

    errors: dict[str, str] = {}
    kind = JStep.CONFIRM if confirm else JStep.CANCEL
    if recorder is not None:  # every confirm is journaled before the first is sent (point of no return)
        for name in names:
            recorder.step(name, kind, persist_id=persist_id_for(migration_id, name), stage="apply")

    def one(name: str) -> None:
        persist = persist_id_for(migration_id, name)
        try:
            if confirm:
                try:
                    sessions[name].commit(persist_id=persist)
                except NetmigError as exc:
                    if retry is None:
                        raise
                    retry(name, exc)
            else:
                sessions[name].cancel_commit(persist)
            if recorder is not None:
                recorder.result(name, kind, ok=True, stage="apply")
        except NetmigError as exc:
            errors[name] = str(exc)
            if recorder is not None:
                recorder.result(name, kind, ok=False, stage="apply", error=str(exc))

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as workers:
        list(workers.map(one, names))
    return errors


@dataclass(slots=True)
class Settler:
    """Confirms the staged destinations; when a confirming commit fails for good after others
    confirmed, gives every destination back (as :meth:`NetworkTransaction._give_back` does)."""

    sessions: Mapping[str, DeviceSession]
    changes: Mapping[str, DeviceChange]
    migration_id: str
    options: MigrationOptions
    factory: SessionFactory
    recorder: MigrationRecorder | None
    on_step: StepHook | None
    notes: dict[str, list[str]] = field(default_factory=dict)
    phases: dict[str, DevicePhase] = field(default_factory=dict)

    def confirm(self, names: Sequence[str]) -> dict[str, str]:
        """Confirm everywhere, a failed confirm retried from new sessions until the confirm timeout;
        errors by device (the devices that failed for good)."""
        deadline = time.monotonic() + self.options.commit.confirm_timeout_s

        def retry(name: str, exc: NetmigError) -> None:
            notes = self.notes.setdefault(name, [])
            notes.append(f"confirming commit failed ({exc}); retrying from a new session")
            confirm_again(self.changes[name], Held(self.sessions[name], False), self.factory,
                          persist_id_for(self.migration_id, name), deadline, notes)

        return settle(self.sessions, names, self.migration_id, confirm=True, recorder=self.recorder,
                       retry=retry)

    def give_back(self, confirmed: Sequence[str], failed: Sequence[str]) -> None:
        """Compensate the confirmed devices (first: the journal's first "compensate" marks the migration
        as rolling back before any cancel), then cancel the failed ones' pending commits; a failed
        device with nothing pending whose running may hold the change (or cannot tell: DI only) is
        compensated too (removal is idempotent). Sets ``phases``."""
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(confirmed)))) as workers:
            list(workers.map(self._compensate, confirmed))
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(failed)))) as workers:
            list(workers.map(self._cancel, failed))

    def _compensate(self, name: str) -> None:
        from netmig.journal import Step as JStep

        change, notes = self.changes[name], self.notes.setdefault(name, [])
        undo_id = persist_id_for(f"{self.migration_id}/compensate", name)
        held = Held(self.sessions[name], False)

        def step(kind: Step, action: Callable[[], None]) -> None:
            if self.recorder is not None:
                self.recorder.step(name, JStep(kind.value), stage="apply",
                                   persist_id=undo_id if kind is Step.COMPENSATE_COMMIT else None)
            if self.on_step is not None:
                self.on_step(name, kind)
            action()

        try:
            done = compensate(change, held, factory=self.factory, persist_id=undo_id,
                              policy=self.options.commit, busy=BusyRetry(self.options.timeouts.busy_wait_s),
                              step=step, notes=notes, close_replaced=False)
        finally:
            if held.session is not self.sessions[name] and held.session is not None:
                held.session.close()
        if self.recorder is not None:
            self.recorder.result(name, JStep.COMPENSATE_CONFIRM if done else JStep.COMPENSATE, ok=done,
                                 stage="apply", error=None if done else notes[-1])
        self.phases[name] = DevicePhase.COMPENSATED if done else DevicePhase.CONFIRMED

    def _cancel(self, name: str) -> None:
        from netmig.journal import Step as JStep

        change, notes = self.changes[name], self.notes.setdefault(name, [])
        persist = persist_id_for(self.migration_id, name)

        def step(kind: Step, action: Callable[[], None]) -> None:  # kind: CANCEL_COMMIT, journaled as cancel
            if self.recorder is None:
                action()
                return
            self.recorder.step(name, JStep.CANCEL, persist_id=persist, stage="apply")
            try:
                action()
            except NetmigError as exc:
                self.recorder.result(name, JStep.CANCEL, ok=False, stage="apply", error=str(exc))
                raise
            self.recorder.result(name, JStep.CANCEL, ok=True, stage="apply")

        def compensate_it() -> bool:
            self._compensate(name)
            return self.phases[name] is DevicePhase.COMPENSATED

        self.phases[name] = give_back_failed(
            change, Held(self.sessions[name], False).live(), factory=self.factory, persist_id=persist,
            policy=self.options.commit, step=step, compensate_it=compensate_it, notes=notes)
