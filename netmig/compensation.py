"""Settling one device after the network-wide point of no return: confirm again, or compensate.

Shared by :class:`netmig.transaction.NetworkTransaction` (centralized and middle modes) and the
distributed modes (:mod:`netmig.modes.distributed`), which settle their destinations outside a
transaction:

- :func:`confirm_again`: a confirming commit failed; retry it from fresh sessions with the persist-id
  until a deadline (an ``invalid-value`` reply means nothing is pending: running is read back to tell
  a lost reply from a rolled-back commit);
- :func:`compensate`: a confirmed device is undone with a confirmed commit of its own (its own
  persist-id), verified and confirmed, because another device's confirming commit failed for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from netmig.change import DeviceChange, SessionFactory, Step
from netmig.errors import DeviceError, NetmigError, RpcError
from netmig.netconf.session import DeviceSession
from netmig.quirks import BusyRetry
from netmig.settings import CommitPolicy
from netmig.xmlkit import local_name, text_of

__all__ = ["Held", "StepRunner", "can_compensate", "compensate", "confirm_again"]

log = logging.getLogger(__name__)

_MIGRATION_NS = "urn:netmig:yang:netmig-migration"

# runs one compensation step: journals/shows ``step`` (before), then calls the action
StepRunner = Callable[[Step, Callable[[], None]], None]


@dataclass(slots=True)
class Held:
    """A device's session and whether it holds the candidate lock; updated in place by :func:`compensate`
    (a dead session is replaced by a new one, which the caller then owns)."""

    session: DeviceSession | None
    locked: bool

    def live(self) -> DeviceSession | None:
        return self.session if self.session is not None and self.session.is_open else None


def can_compensate(change: DeviceChange) -> bool:
    """Whether ``change`` carries an undo: a static ``undo`` with its ``verify_undone``, and/or
    ``undo_ops`` (a DI-only device: an empty or missing ``undo``)."""
    static = change.undo is not None and len(change.undo) > 0
    if static:
        return change.verify_undone is not None
    return bool(change.undo_ops)


def confirm_again(change: DeviceChange, held: Held, factory: SessionFactory, persist_id: str,
                  deadline: float, notes: list[str]) -> None:
    """Confirm from fresh sessions (the live one while it lives: it holds the lock) until ``deadline``.

    An invalid-value reply means no commit with this persist-id is pending: running is read and
    ``change.verify`` decides; the lost-reply case (running holds the change) succeeds, a rolled-back
    device raises. A change with nothing static to check (DI only) cannot tell the two apart and raises.
    """
    name = change.endpoint.name
    while True:
        time.sleep(0.2)
        try:
            old = held.live()
            session = old if old is not None else factory(change.endpoint)
            session.open()
            try:
                try:
                    session.commit(persist_id=persist_id)
                except RpcError as exc:
                    if exc.tag != "invalid-value":
                        raise
                    if not len(change.edit):
                        raise DeviceError(session.device, "confirming commit: nothing is pending and "
                                          "running cannot tell whether the DI-only change took "
                                          "effect") from exc
                    mismatches = change.verify(session.get_config("running", change.verify_filter))
                    if mismatches:
                        raise DeviceError(session.device, "confirming commit: the confirmed commit is "
                                          f"gone and running lacks the change: {mismatches[0]}") from exc
                    notes.append("the earlier confirming commit had taken effect (reply lost)")
            finally:
                if session is not old:
                    session.close()
            return
        except NetmigError as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("%s: confirming commit retry failed: %s", name, exc)


def compensate(change: DeviceChange, held: Held, *, factory: SessionFactory, persist_id: str | None,
               policy: CommitPolicy, busy: BusyRetry, step: StepRunner, notes: list[str],
               close_replaced: bool = True) -> bool:
    """Undo a confirmed device; True when the undo is confirmed (the device is back where it was).

    Under the candidate lock (taken again on the live session, or on a new one when the old session
    died): discard, edit-config of ``undo`` (when there is one), then each of ``undo_ops`` (e.g.
    ``withdraw-di``), validate; commit confirmed with ``persist_id``; verify with ``verify_undone``
    that running no longer holds the static change; confirm; unlock. A DI-only change has no
    ``verify_undone``: netmig cannot read the opaque DI, so the device's answers to ``undo_ops`` (how
    many entries it withdrew) are the evidence, kept in ``notes``. On failure the device keeps the
    change; a compensating commit already sent is cancelled, and the failure is noted.
    """
    name, quirks = change.endpoint.name, change.endpoint.quirks
    if not can_compensate(change):
        notes.append("confirmed; no undo to compensate with, keeps the change")
        return False
    undo = change.undo if change.undo is not None and len(change.undo) else None
    undone = change.verify_undone
    sent = False
    try:
        if held.live() is None:
            fresh = factory(change.endpoint)  # the old session died: lock again on a new one
            fresh.open()
            if held.session is not None and close_replaced:
                held.session.close()
            held.session, held.locked = fresh, False
        s = held.session
        assert s is not None
        if not held.locked:
            busy.run(quirks, lambda: s.lock("candidate"), what=f"{name}: lock")
            held.locked = True

        def edit() -> None:
            s.discard_changes()
            if undo is not None:
                s.edit_config("candidate", undo)
            for op in change.undo_ops:
                reply = s.rpc(op)
                count = text_of(reply, _MIGRATION_NS, "entry-count")
                notes.append(f"compensation: {local_name(op)} answered "
                             f"{count if count is not None else 'ok'}")
            if quirks.validate == "candidate":
                s.validate("candidate")
            elif quirks.validate == "inline" and undo is not None:
                s.validate(undo)

        def commit() -> None:
            nonlocal sent
            sent = True
            try:
                busy.run(quirks, lambda: s.commit(confirmed=True, timeout_s=policy.confirm_timeout_s,
                                                  persist=persist_id), what=f"{name}: compensating commit")
            except RpcError:
                sent = False  # refused: nothing was committed
                raise

        def verify() -> None:
            if undone is None:
                return  # DI only: the undo_ops' replies are the evidence (see the docstring)
            left = undone(s.get_config("running", change.verify_filter))
            if left:
                raise DeviceError(s.device, f"compensation: running still holds the change: {left[0]}")

        step(Step.COMPENSATE, edit)
        step(Step.COMPENSATE_COMMIT, commit)
        step(Step.COMPENSATE_VERIFY, verify)
        step(Step.COMPENSATE_CONFIRM, lambda: s.commit(persist_id=persist_id))
    except NetmigError as exc:
        log.warning("%s: compensation failed: %s", name, exc)
        notes.append(f"compensation failed, keeps the change: {exc}")
        live = held.live()
        if sent and live is not None:
            try:  # back to the confirmed change rather than wait for the undo's timer
                live.cancel_commit(persist_id)
            except NetmigError as cancel_exc:
                notes.append(f"cancel of the compensating commit failed: {cancel_exc} (the device "
                             f"reverts to the change after {policy.confirm_timeout_s} s)")
        return False
    try:
        s.unlock("candidate")
        held.locked = False
    except NetmigError as exc:  # undone and confirmed; closing the session releases the lock
        notes.append(f"unlock failed: {exc}")
    return True
