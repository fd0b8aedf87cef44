"""The network-wide transaction: all destination devices take the change, or none keeps it.

Steps (DESIGN.md): open every session in parallel and check capabilities; lock the candidate, discard
stale changes, edit, validate (as the device's quirk profile says); ``commit confirmed`` with a
confirm-timeout and a fresh persist token per device; read running back and verify it; confirming
commit everywhere; unlock. A failure before the confirming commits cancels the confirmed commit on every
device that took one (from a new session, with the persist token, when the old one is gone) and discards
the candidate on the others, then raises :class:`MigrationRolledBackError`; a cancel that fails raises
:class:`RollbackIncompleteError` naming the devices. ``on_step(device, step)`` is called before each step
is taken, from worker threads, so a journal can record it and a progress display can show it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NoReturn

from netmig.change import DeviceChange, PlannedChange, SessionFactory, Step, StepHook
from netmig.compensation import Held, compensate, confirm_again, give_back_failed
from netmig.errors import (
    DeviceError,
    MigrationRolledBackError,
    NetmigError,
    RollbackIncompleteError,
    RpcError,
    TransactionError,
)
from netmig.feedback import DeviceOutcome, DevicePhase
from netmig.netconf.session import DeviceSession
from netmig.quirks import BusyRetry
from netmig.settings import CommitPolicy, DeviceEndpoint, SshPolicy, Timeouts
from netmig.xmlkit import Element, fingerprint, to_bytes

__all__ = ["DeviceChange", "NetworkTransaction", "PlannedChange", "SessionFactory", "Step", "StepHook"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Device:
    change: DeviceChange
    persist_id: str
    session: DeviceSession | None = None
    phase: DevicePhase = DevicePhase.PENDING
    locked: bool = False
    commit_sent: bool = False
    error: str | None = None
    # the staged candidate's verified answer to verify_filter (c14n), while the candidate is unchanged
    staged_print: bytes | None = None
    read_ahead: Element | RpcError | None = None  # running, read in the commit's flight
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.change.endpoint.name


class _Aborted(Exception):
    """Another device failed: stop before the next step."""


class _PhaseFailed(Exception):
    """At least one device failed in a phase."""


class NetworkTransaction:
    """Apply a list of :class:`DeviceChange` as one confirmed-commit transaction across devices."""

    def __init__(self, changes: Sequence[DeviceChange], *, ssh: SshPolicy | None = None,
                 timeouts: Timeouts | None = None, commit: CommitPolicy | None = None,
                 on_step: StepHook | None = None, max_workers: int | None = None,
                 session_factory: SessionFactory | None = None, owns_sessions: bool = True) -> None:
        names = [c.endpoint.name for c in changes]
        if len(set(names)) != len(names):
            raise ValueError(f"a device appears twice in the change set: {sorted(names)}")
        self.changes = tuple(changes)
        self.commit_policy = commit if commit is not None else CommitPolicy()
        self._ssh = ssh if ssh is not None else SshPolicy()
        self._timeouts = timeouts if timeouts is not None else Timeouts()
        self._on_step = on_step
        self._workers = max(1, min(max_workers or 32, len(self.changes) or 1))
        self._factory = session_factory or self._default_session
        # False: the factory hands out sessions someone else owns (a SessionPool); leave them open.
        self._owns_sessions = owns_sessions if session_factory is not None else True
        self._staged: list[_Device] | None = None
        self._abort = threading.Event()
        self._threads: ThreadPoolExecutor | None = None
        self._busy = BusyRetry(max_wait_s=self._timeouts.busy_wait_s)
        # Fresh per device per transaction; public so a journal can record them before anything is sent.
        self.persist_ids = {name: secrets.token_hex(16) for name in names}
        self.compensate_ids = {name: secrets.token_hex(16) for name in names}  # the undo's commits
        self.timings_ms: dict[str, float] = {}
        self.replies: dict[str, tuple[Element, ...]] = {}  # per device: the replies to its extra_ops

    def _default_session(self, endpoint: DeviceEndpoint) -> DeviceSession:
        return DeviceSession(endpoint, ssh=self._ssh, timeouts=self._timeouts)

    # ------------------------------------------------------------------ public
    def dry_run(self) -> tuple[PlannedChange, ...]:
        """The change set, as it would be sent; touches no device."""
        return tuple(PlannedChange(c.endpoint.name, c.endpoint.address, c.endpoint.quirks.validate,
                                   to_bytes(c.edit, pretty=True).decode()) for c in self.changes)

    def run(self) -> tuple[DeviceOutcome, ...]:
        """Apply everywhere or nowhere; returns per-device outcomes on success.

        Raises:
            MigrationRolledBackError: a device failed; every device is back where it was.
            RollbackIncompleteError: a device failed and some could not be rolled back.
        """
        devices = [_Device(c, self.persist_ids[c.endpoint.name]) for c in self.changes]
        self._abort.clear()
        return self._complete(devices, stage=True)

    def stage(self) -> None:
        """Phase one of a two-phase run: connect, check, lock, discard, edit, validate; keep it staged.

        Every candidate is left locked and holding the change; :meth:`commit_staged` finishes the
        transaction, :meth:`release` discards it. A failure discards everywhere and raises like :meth:`run`.
        """
        if self._staged is not None:
            raise RuntimeError("already staged")
        devices = [_Device(c, self.persist_ids[c.endpoint.name]) for c in self.changes]
        self._abort.clear()
        try:
            self._phase("prepare", devices, self._prepare)
            if self.commit_policy.verify:
                self._phase("check-staged", devices, self._check_staged)
        except _PhaseFailed:
            self._phase("rollback", devices, self._rollback, stop_on_failure=False)
            self._close_all(devices)
            raise self._rolled_back(devices) from None
        except BaseException:
            self._abort.set()
            self._phase("rollback", devices, self._rollback, stop_on_failure=False)
            self._close_all(devices)
            raise
        self._staged = devices

    def commit_staged(self, updates: Mapping[str, DeviceChange] | None = None, *,
                      then: Callable[[], None] | None = None) -> tuple[DeviceOutcome, ...]:
        """Phase two: add each device's update (an edit merged onto the staged candidate; its ``verify``
        replaces the staged one), validate again, then commit confirmed, verify and confirm as :meth:`run`.

        ``then``: return as soon as every device confirmed (devices in phase CONFIRMED) and unlock in a
        background thread, which calls ``then()`` after; the VM need not wait for the unlocks.
        """
        devices, self._staged = self._staged, None
        if devices is None:
            raise RuntimeError("nothing staged")
        self._abort.clear()
        extra = dict(updates or {})
        unknown = sorted(set(extra) - {d.name for d in devices})
        if unknown:
            self._phase("rollback", devices, self._rollback, stop_on_failure=False)
            self._close_all(devices)
            raise ValueError(f"update for devices that were not staged: {unknown}")
        for dev in devices:
            if dev.name in extra:
                dev.change = extra[dev.name]
        return self._complete(devices, stage=False, extra=set(extra), then=then)

    def release(self) -> None:
        """Give up a staged transaction: discard every candidate and unlock."""
        devices, self._staged = self._staged, None
        if devices is None:
            return
        try:
            self._phase("rollback", devices, self._rollback, stop_on_failure=False)
        finally:
            self._close_all(devices)

    def _complete(self, devices: list[_Device], *, stage: bool,
                  extra: set[str] | frozenset[str] = frozenset(),
                  then: Callable[[], None] | None = None) -> tuple[DeviceOutcome, ...]:
        handed_over = False
        try:
            try:
                if stage:
                    self._phase("prepare", devices, self._prepare)
                elif extra:
                    self._phase("update", [d for d in devices if d.name in extra], self._update)
                self._phase("commit", devices, self._commit_confirmed)
                if self.commit_policy.verify:
                    self._phase("verify", devices, self._verify)
            except _PhaseFailed:
                self._phase("rollback", devices, self._rollback, stop_on_failure=False)
                raise self._rolled_back(devices) from None
            except BaseException:
                self._abort.set()
                self._phase("rollback", devices, self._rollback, stop_on_failure=False)
                raise
            self._phase("confirm", devices, self._confirm, stop_on_failure=False)
            failed = [d for d in devices if d.phase is not DevicePhase.CONFIRMED]
            if failed:
                self._abort.set()
                self._give_back(devices, failed)
            if then is not None:
                outcomes = self._outcomes(devices)
                threading.Thread(target=self._unlock_then, args=(devices, then),
                                 name="netmig-txn-unlock").start()
                handed_over = True
                return outcomes
            self._phase("unlock", devices, self._finish, stop_on_failure=False)
            return self._outcomes(devices)
        finally:
            if not handed_over:
                self._close_all(devices)

    def _unlock_then(self, devices: list[_Device], then: Callable[[], None]) -> None:
        try:
            self._phase("unlock", devices, self._finish, stop_on_failure=False)
        finally:
            self._close_all(devices)
            then()

    # ------------------------------------------------------------------ phases
    def _phase(self, label: str, devices: Iterable[_Device], fn: Callable[[_Device], object], *,
               stop_on_failure: bool = True) -> None:
        started = time.perf_counter()
        todo = list(devices)
        if self._threads is None:  # one set of threads for every phase: starting threads costs ~1 ms each
            self._threads = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="netmig-txn")
        results = list(self._threads.map(lambda d: self._guarded(d, fn), todo))
        self.timings_ms[label] = (time.perf_counter() - started) * 1000
        if stop_on_failure and not all(results):
            raise _PhaseFailed(label)

    def _guarded(self, dev: _Device, fn: Callable[[_Device], object]) -> bool:
        try:
            fn(dev)
            return True
        except _Aborted:
            return False
        except NetmigError as exc:
            dev.error = dev.error or str(exc)
            log.warning("%s", exc)
            self._abort.set()
            return False

    def _step(self, dev: _Device, step: Step, action: Callable[[], None], reached: DevicePhase | None,
              *, abortable: bool = True) -> None:
        if abortable and self._abort.is_set():
            raise _Aborted
        if self._on_step is not None:
            self._on_step(dev.name, step)
        started = time.perf_counter()
        try:
            action()
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            dev.timings_ms[step.value] = dev.timings_ms.get(step.value, 0.0) + elapsed_ms
        if reached is not None:
            dev.phase = reached

    def _session(self, dev: _Device) -> DeviceSession:
        if dev.session is None:
            raise RuntimeError(f"{dev.name}: no session")  # a bug: steps run in order
        return dev.session

    def _prepare(self, dev: _Device) -> None:
        change = dev.change

        def connect() -> None:
            session = self._factory(change.endpoint)
            session.open()
            dev.session = session

        self._step(dev, Step.CONNECT, connect, DevicePhase.CONNECTED)
        s = self._session(dev)
        needed = [":candidate", ":confirmed-commit:1.1"]
        if change.endpoint.quirks.validate != "skip":
            needed.append(":validate")
        self._step(dev, Step.CHECK, lambda: s.capabilities.require(
            *needed, modules=change.modules, features=change.features), DevicePhase.CHECKED)

        def lock() -> None:  # bounded wait while another session's confirmed commit blocks the device
            self._busy.run(change.endpoint.quirks, lambda: s.lock("candidate"), what=f"{dev.name}: lock",
                           abort=self._abort.is_set)
            dev.locked = True

        self._step(dev, Step.LOCK, lock, DevicePhase.LOCKED)
        self._step(dev, Step.DISCARD, s.discard_changes, None)

        def edit() -> None:
            if len(change.edit):
                s.edit_config("candidate", change.edit)
            self.replies[dev.name] = tuple(s.rpc(op) for op in change.extra_ops)

        self._step(dev, Step.EDIT, edit, DevicePhase.EDITED)
        mode = change.endpoint.quirks.validate
        if mode == "candidate":
            self._step(dev, Step.VALIDATE, lambda: s.validate("candidate"), DevicePhase.VALIDATED)
        elif mode == "inline" and len(change.edit):
            self._step(dev, Step.VALIDATE, lambda: s.validate(change.edit), DevicePhase.VALIDATED)

    def _check_staged(self, dev: _Device) -> None:
        """Read the staged candidate back and verify it now, while the VM still runs; at the commit, a
        running that answers the same bytes needs no second decode (see :meth:`_verify`)."""
        s = self._session(dev)

        def check() -> None:
            candidate = s.get_config("candidate", dev.change.verify_filter)
            self._require_change(dev, candidate, "staged candidate")
            dev.staged_print = fingerprint(candidate)

        self._step(dev, Step.CHECK_STAGED, check, None)

    def _require_change(self, dev: _Device, data: Element, where: str) -> None:
        mismatches = dev.change.verify(data)
        if mismatches:
            more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
            raise DeviceError(dev.name, f"verify: {where} lacks the change: {mismatches[0]}{more}")

    def _update(self, dev: _Device) -> None:
        s = self._session(dev)
        change = dev.change
        dev.staged_print = None  # the candidate changes: verify running in full
        if len(change.edit):
            self._step(dev, Step.EDIT, lambda: s.edit_config("candidate", change.edit), DevicePhase.EDITED)
        mode = change.endpoint.quirks.validate
        if mode == "candidate":
            self._step(dev, Step.VALIDATE, lambda: s.validate("candidate"), DevicePhase.VALIDATED)

    def _commit_confirmed(self, dev: _Device) -> None:
        s = self._session(dev)
        policy = self.commit_policy

        persist = dev.persist_id if policy.persist else None

        def commit_and_read() -> None:  # the verify read rides in the commit's flight: one round trip
            dev.read_ahead = s.commit_and_read(dev.change.verify_filter, confirmed=True,
                                               timeout_s=policy.confirm_timeout_s, persist=persist)

        def commit_only() -> None:
            s.commit(confirmed=True, timeout_s=policy.confirm_timeout_s, persist=persist)

        def commit() -> None:
            dev.commit_sent = True
            dev.read_ahead = None
            try:
                self._busy.run(dev.change.endpoint.quirks, commit_and_read if policy.verify else commit_only,
                               what=f"{dev.name}: commit", abort=self._abort.is_set)
            except RpcError:
                dev.commit_sent = False  # refused: nothing was committed
                raise

        self._step(dev, Step.COMMIT_CONFIRMED, commit, DevicePhase.COMMITTED)

    def _verify(self, dev: _Device) -> None:
        s = self._session(dev)

        def verify() -> None:
            running, dev.read_ahead = dev.read_ahead, None
            if not isinstance(running, Element):  # not read in the commit's flight, or that read failed
                running = s.get_config("running", dev.change.verify_filter)
            if dev.staged_print is not None and fingerprint(running) == dev.staged_print:
                return  # running answers exactly what the staged candidate answered, verified before
            self._require_change(dev, running, "running")

        self._step(dev, Step.VERIFY, verify, DevicePhase.VERIFIED)

    def _confirm(self, dev: _Device) -> None:
        s = self._session(dev)
        persist_id = dev.persist_id if self.commit_policy.persist else None
        try:
            self._step(dev, Step.CONFIRM, lambda: s.commit(persist_id=persist_id), DevicePhase.CONFIRMED,
                       abortable=False)
        except NetmigError as exc:
            if persist_id is None:
                raise
            # Other devices may be confirmed already: giving up now would leave the change half-applied.
            # Retry from a new session with the persist-id while the confirmed commit can still be pending.
            dev.notes.append(f"confirming commit failed ({exc}); retrying from a new session")
            held = Held(dev.session, dev.locked)
            confirm_again(dev.change, held, self._factory, persist_id,
                          time.monotonic() + self.commit_policy.confirm_timeout_s, dev.notes)
            dev.phase = DevicePhase.CONFIRMED

    def _finish(self, dev: _Device) -> None:
        s = self._session(dev)
        try:
            self._step(dev, Step.UNLOCK, lambda: s.unlock("candidate"), DevicePhase.DONE, abortable=False)
            dev.locked = False
        except NetmigError as exc:  # the change is confirmed; closing the session releases the lock
            dev.notes.append(f"unlock failed: {exc}")
            dev.phase = DevicePhase.DONE

    # ------------------------------------------------------------------ compensation
    def _give_back(self, devices: list[_Device], failed: list[_Device]) -> NoReturn:
        """Confirming failed for good on ``failed`` after the others confirmed: undo every confirmed device
        with its own confirmed commit (first, so a journal's first "compensate" record marks the migration
        as rolling back before any cancel), then cancel the failed devices' pending commits, and raise
        MigrationRolledBackError when every device is back where it was, else RollbackIncompleteError
        naming the devices that are not."""
        confirmed = [d for d in devices if d.phase is DevicePhase.CONFIRMED]
        self._phase("compensate", confirmed, self._compensate, stop_on_failure=False)
        self._phase("rollback", failed, self._rollback, stop_on_failure=False)
        outcomes = self._outcomes(devices)
        names = ", ".join(d.name for d in failed)
        first = next((d.error for d in failed if d.error), "unknown failure")
        stuck = [d.name for d in devices if d.phase in (DevicePhase.CONFIRMED, DevicePhase.ROLLBACK_FAILED)]
        if stuck:
            raise RollbackIncompleteError(f"confirming commit failed on {names} ({first}); devices confirmed "
                                          "and not compensated, or not rolled back, keep the change",
                                          stuck, outcomes)
        raise MigrationRolledBackError(f"confirming commit failed on {names} ({first}); "
                                       f"{len(confirmed)} confirmed device(s) compensated: every device of "
                                       f"{len(devices)} is back where it was", outcomes)

    def _compensate(self, dev: _Device) -> bool:
        """Undo a confirmed device with a confirmed commit of its own (``compensation.compensate``),
        under the transaction's candidate lock, which is held until every confirming commit succeeded;
        True (and COMPENSATED) when undone."""
        persist_id = self.compensate_ids[dev.name] if self.commit_policy.persist else None
        held = Held(dev.session, dev.locked)
        try:
            done = compensate(dev.change, held, factory=self._factory, persist_id=persist_id,
                              policy=self.commit_policy, busy=self._busy, notes=dev.notes,
                              step=lambda step, action: self._step(dev, step, action, None, abortable=False),
                              close_replaced=self._owns_sessions)
        finally:
            dev.session, dev.locked = held.session, held.locked
        if done:
            dev.phase = DevicePhase.COMPENSATED
        return done

    # ------------------------------------------------------------------ rollback
    def _rollback(self, dev: _Device) -> None:
        if dev.phase is DevicePhase.CONFIRMED:
            return  # cannot be undone by cancel-commit
        if dev.commit_sent:
            self._cancel(dev)
        if dev.locked and dev.session is not None and dev.session.is_open:
            s = dev.session
            try:
                self._step(dev, Step.ROLLBACK_DISCARD, s.discard_changes, None, abortable=False)
                if dev.phase not in (DevicePhase.ROLLED_BACK, DevicePhase.ROLLBACK_FAILED,
                                     DevicePhase.COMPENSATED):
                    dev.phase = DevicePhase.DISCARDED
                s.unlock("candidate")
                dev.locked = False
            except NetmigError as exc:
                dev.notes.append(f"discard/unlock failed: {exc}")

    def _cancel(self, dev: _Device) -> None:
        """Cancel the pending confirmed commit; when nothing is pending, running tells whether the device is
        back, else it is compensated too (``compensation.give_back_failed``: e.g. a DI-only device whose
        confirming commit took effect with the reply lost)."""
        persist_id = dev.persist_id if self.commit_policy.persist else None
        live = dev.session if dev.session is not None and dev.session.is_open else None
        dev.phase = give_back_failed(
            dev.change, live, factory=self._factory, persist_id=persist_id, policy=self.commit_policy,
            step=lambda step, action: self._step(dev, step, action, None, abortable=False),
            compensate_it=lambda: self._compensate(dev), notes=dev.notes)

    def _rolled_back(self, devices: list[_Device]) -> TransactionError:
        outcomes = self._outcomes(devices)
        failed = [d for d in devices if d.error]
        first = failed[0].error if failed else "unknown failure"
        stuck = [d.name for d in devices if d.phase is DevicePhase.ROLLBACK_FAILED]
        if stuck:
            return RollbackIncompleteError(f"migration failed ({first}) and rollback failed", stuck, outcomes)
        return MigrationRolledBackError(f"migration rolled back on {len(devices)} device(s): {first}",
                                        outcomes)

    def _close_all(self, devices: list[_Device]) -> None:
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False)
        for dev in devices:
            if dev.session is not None and self._owns_sessions:
                dev.session.close()

    def _outcomes(self, devices: list[_Device]) -> tuple[DeviceOutcome, ...]:
        result = []
        for d in devices:
            ok = d.error is None and d.phase in (DevicePhase.CONFIRMED, DevicePhase.DONE)
            error = "; ".join(([d.error] if d.error is not None else []) + d.notes) or None
            result.append(DeviceOutcome(d.name, d.phase, ok, error, dict(d.timings_ms)))
        return tuple(result)
