"""Settling one device after the network-wide point of no return: confirm again, or compensate.

Shared by :class:`netmig.transaction.NetworkTransaction` (centralized and middle modes) and the
distributed modes (:mod:`netmig.modes.distributed`), which settle their destinations outside a
transaction:

- :func:`confirm_again`: a confirming commit failed; retry it from fresh sessions with the persist-id
  until a deadline (an ``invalid-value`` reply means nothing is pending: running is read back to tell
  a lost reply from a rolled-back commit);
- :func:`compensate`: a confirmed device is undone with a confirmed commit of its own (its own
  persist-id), verified and confirmed, because another device's confirming commit failed for good;
- :func:`give_back_failed`: a device that is not confirmed is cancelled, or, when nothing is pending
  and running may hold the change (or cannot tell: DI only), compensated too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from netmig.change import DeviceChange, SessionFactory, Step
from netmig.errors import DeviceError, NetmigError, RpcError
from netmig.feedback import DevicePhase
from netmig.netconf.session import DeviceSession
from netmig.quirks import BusyRetry
from netmig.settings import CommitPolicy
from netmig.xmlkit import local_name, text_of

__all__ = ["Held", "StepRunner", "can_compensate", "compensate", "confirm_again", "give_back_failed"]

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

    An invalid-value reply means no commit with this persist-id is pending, for good: running is read and
    ``change.verify`` decides, without retrying; the lost-reply case (running holds the change) succeeds,
    a rolled-back device raises. A change with nothing static to check (DI only) cannot tell the two apart
    and raises at once: the caller gives it back (:func:`give_back_failed` compensates it).
    """
    name = change.endpoint.name
    while True:
        time.sleep(0.2)
        try:
            verdict = _confirm_once(change, held, factory, persist_id, notes)
        except NetmigError as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("%s: confirming commit retry failed: %s", name, exc)
            continue
        if verdict is not None:
            raise verdict
        return


def _confirm_once(change: DeviceChange, held: Held, factory: SessionFactory, persist_id: str,
                  notes: list[str]) -> DeviceError | None:
    """One confirming commit; None when confirmed, the final error when nothing is pending and running
    lacks the change (or cannot tell); raises a (retryable) NetmigError when the attempt itself failed."""
    old = held.live()
    session = old if old is not None else factory(change.endpoint)
    session.open()
    try:
        try:
            session.commit(persist_id=persist_id)
            return None
        except RpcError as exc:
            if exc.tag != "invalid-value":
                raise
            gone = exc
        if not len(change.edit):
            return _final(DeviceError(session.device, "confirming commit: nothing is pending and running "
                                      "cannot tell whether the DI-only change took effect"), gone)
        mismatches = change.verify(session.get_config("running", change.verify_filter))
        if mismatches:
            return _final(DeviceError(session.device, "confirming commit: the confirmed commit is gone and "
                                      f"running lacks the change: {mismatches[0]}"), gone)
        notes.append("the earlier confirming commit had taken effect (reply lost)")
        return None
    finally:
        if session is not old:
            session.close()


def _final(error: DeviceError, cause: BaseException) -> DeviceError:
    error.__cause__ = cause
    return error


def _checkable(change: DeviceChange) -> bool:
    """Whether running can tell that a device does not hold ``change``: it has a static undo to check."""
    return change.verify_undone is not None and change.undo is not None and len(change.undo) > 0


def _unchanged(change: DeviceChange, live: DeviceSession | None, factory: SessionFactory) -> bool:
    """Whether running (read on ``live``, else on a new session) holds none of the static change; False
    when there is none to check or running cannot be read."""
    undone = change.verify_undone
    if undone is None or not _checkable(change):
        return False
    try:
        session = live if live is not None and live.is_open else factory(change.endpoint)
        try:
            if session is not live:
                session.open()
            return not undone(session.get_config("running", change.verify_filter))
        finally:
            if session is not live:
                session.close()
    except NetmigError as exc:
        log.info("%s: reading running after the failed cancel failed: %s", change.endpoint.name, exc)
        return False


def give_back_failed(change: DeviceChange, live: DeviceSession | None, *, factory: SessionFactory,
                     persist_id: str | None, policy: CommitPolicy, step: StepRunner,
                     compensate_it: Callable[[], bool], notes: list[str]) -> DevicePhase:
    """Give back a device whose confirmed commit is not confirmed: ROLLED_BACK, COMPENSATED or
    ROLLBACK_FAILED.

    Cancel its pending commit (``step(CANCEL_COMMIT, ...)``, on ``live``, else from a new session with
    ``persist_id``; without one, a lost session has already reverted it: RFC 6241 8.4.1). When that
    fails (nothing pending: never sent, lost in a reboot, expired, or confirmed with the reply lost; or
    the device unreachable), running is read again until the confirmed commit's own timeout has passed,
    and a device whose running holds none of the static change is rolled back. One whose running still
    holds it, or cannot tell (DI only: netmig cannot read the opaque DI), is compensated with
    ``compensate_it`` when it carries an undo: removal is idempotent (``withdraw-di`` of imports that
    are gone removes 0 entries).
    """
    name = change.endpoint.name

    def cancel() -> None:
        if live is not None and live.is_open:
            live.cancel_commit(persist_id)
        elif persist_id is None:
            notes.append("session lost; the device reverts a non-persistent confirmed commit")
        else:
            session = factory(change.endpoint)
            session.open()
            try:
                session.cancel_commit(persist_id)
            finally:
                session.close()

    try:
        step(Step.CANCEL_COMMIT, cancel)
        return DevicePhase.ROLLED_BACK
    except NetmigError as exc:
        log.info("%s: cancel-commit failed: %s", name, exc)
        notes.append(f"cancel-commit failed: {exc}")
    deadline = time.monotonic() + policy.confirm_timeout_s + 2
    while not (unchanged := _unchanged(change, live, factory)) and _checkable(change) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    if unchanged:
        notes.append("nothing is pending and running does not hold the static change (which the change's "
                     "confirmed commit, imports included, shares)")
        return DevicePhase.ROLLED_BACK
    if can_compensate(change):
        notes.append("nothing is pending and running may hold the change: compensating it")
        if compensate_it():
            return DevicePhase.COMPENSATED
    elif not _checkable(change):
        notes.append("nothing to read back or undo the change with")
    notes.append(f"not rolled back (a pending commit reverts by itself after {policy.confirm_timeout_s} s)")
    return DevicePhase.ROLLBACK_FAILED


def compensate(change: DeviceChange, held: Held, *, factory: SessionFactory, persist_id: str | None,
               policy: CommitPolicy, busy: BusyRetry, step: StepRunner, notes: list[str],
               close_replaced: bool = True) -> bool:
    """Undo a confirmed device; True when the undo is confirmed (the device is back where it was).

    Under the candidate lock (taken again on the live session, or on a new one when the old session
    died): discard, edit-config of ``undo`` (when there is one), then each of ``undo_ops`` (e.g.
    ``withdraw-di``), validate; commit confirmed with ``persist_id``; verify with ``verify_undone``
    that running no longer holds the static change; confirm; unlock. A DI-only change has no
    ``verify_undone``: netmig cannot read the opaque DI, so the device's answers to ``undo_ops`` (how
    many entries it withdrew) are the evidence, kept in ``notes``; when every one answers 0 (the
    candidate, fresh from running, holds nothing the migration's imports created), there is nothing to
    undo: the candidate is discarded and nothing is committed. On failure the device keeps the change; a
    compensating commit already sent is cancelled, and the failure is noted.
    """
    name, quirks = change.endpoint.name, change.endpoint.quirks
    if not can_compensate(change):
        notes.append("confirmed; no undo to compensate with, keeps the change")
        return False
    undo = change.undo if change.undo is not None and len(change.undo) else None
    undone = change.verify_undone
    sent = False
    counts: list[str | None] = []  # the undo_ops' entry-count answers
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
                counts.append(count)
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
        if undo is None and counts and all(c is not None and c.strip() == "0" for c in counts):
            s.discard_changes()  # DI only and nothing withdrawn: running holds none of the imports
            notes.append("compensation: running holds nothing the imports created; nothing to commit")
        else:
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
