"""Sessions that wait, with jittered backoff and a bound, while another session holds a device's candidate.

Two migrations touching the same device serialise on its candidate lock: a lock-denied (or, on servers
whose pending confirmed commit blocks others, in-use/resource-denied) is retried briefly; past the bound
the session raises :class:`DeviceBusyError` naming the device and the holder, and the factory remembers
it so the caller can roll its transaction back (releasing every lock it got) and retry as a whole.
"""

from __future__ import annotations

import logging
import random
import time

from netmig.errors import DeviceError, RpcError
from netmig.netconf.session import DeviceSession
from netmig.settings import DeviceEndpoint, SshPolicy, Timeouts
from netmig.xmlkit import Element

__all__ = ["DeviceBusyError", "PatientSession", "PatientSessionFactory", "patient_sessions"]

log = logging.getLogger(__name__)

_BUSY_TAGS = ("lock-denied", "in-use", "resource-denied")


class DeviceBusyError(DeviceError):
    """Another session (another migration) held the device's candidate longer than we may wait."""


class PatientSession(DeviceSession):
    """A session whose ``lock`` waits, with jittered exponential backoff, while another session holds it."""

    def __init__(self, endpoint: DeviceEndpoint, *, ssh: SshPolicy | None = None,
                 timeouts: Timeouts | None = None, max_wait_s: float = 30.0) -> None:
        super().__init__(endpoint, ssh=ssh, timeouts=timeouts)
        self.max_wait_s = max_wait_s

    def lock(self, target: str = "candidate") -> None:
        # a server whose confirm timer fires only after some quiet (yuma123 netconfd) must be polled more
        # slowly than that, or the pending commit we wait for never rolls back (FACTS.md quirk 2)
        quiet = self.endpoint.quirks.confirmed_timer_needs_quiet_s
        floor = quiet + 0.5 if quiet else 0.0
        wait = max(self.max_wait_s, 3 * floor)
        deadline = time.monotonic() + wait
        delay = max(0.05, floor)
        while True:
            try:
                super().lock(target)
                return
            except RpcError as exc:
                if exc.tag not in _BUSY_TAGS:
                    raise
                holder = next((e.info.get("session-id") for e in exc.errors if e.info.get("session-id")),
                              None)
                if time.monotonic() + delay > deadline:
                    who = f"session {holder}" if holder else "another session"
                    said = next((e.message for e in exc.errors if e.message), "")
                    raise DeviceBusyError(self.device, f"{target} is held by {who} (another migration?) "
                                          f"for more than {wait:g} s: {exc.tag}"
                                          + (f" ({said})" if said else "")) from exc
                log.info("%s: %s busy (%s), retrying in %.2f s", self.device, target, exc.tag, delay)
                time.sleep(max(floor, delay * random.uniform(0.5, 1.0)))
                delay = max(floor, min(delay * 2, 1.0))


class PatientSessionFactory:
    """A transaction session factory whose sessions wait (briefly) for a busy candidate lock.

    ``busy`` tells afterwards whether any session gave up on a busy lock, or had a commit refused with
    ``in-use`` (another coordinator's persistent confirmed commit is pending there, e.g. a d-push or
    d-pull migration's, which holds the device without its lock), so the caller can roll the whole
    transaction back (releasing the locks it got: no deadlock between two migrations) and retry.
    """

    def __init__(self, ssh: SshPolicy, timeouts: Timeouts, *, max_wait_s: float = 30.0) -> None:
        self.ssh, self.timeouts, self.max_wait_s = ssh, timeouts, max_wait_s
        self.busy = False

    def __call__(self, endpoint: DeviceEndpoint) -> DeviceSession:
        factory = self

        class _Session(PatientSession):
            def lock(self, target: str = "candidate") -> None:
                try:
                    super().lock(target)
                except DeviceBusyError:
                    factory.busy = True
                    raise

            def commit(self, *, confirmed: bool = False, timeout_s: int | None = None,
                       persist: str | None = None, persist_id: str | None = None) -> None:
                try:
                    super().commit(confirmed=confirmed, timeout_s=timeout_s, persist=persist,
                                   persist_id=persist_id)
                except RpcError as exc:
                    if exc.tag == "in-use" and persist_id is None:  # not our own confirm: someone else's
                        factory.busy = True
                    raise

            def commit_and_read(self, read_filter: Element | None, *, confirmed: bool = False,
                                timeout_s: int | None = None,
                                persist: str | None = None) -> Element | RpcError:
                try:
                    return super().commit_and_read(read_filter, confirmed=confirmed, timeout_s=timeout_s,
                                                   persist=persist)
                except RpcError as exc:
                    if exc.tag == "in-use":  # a commit, never a confirm: another coordinator's is pending
                        factory.busy = True
                    raise
        return _Session(endpoint, ssh=self.ssh, timeouts=self.timeouts, max_wait_s=self.max_wait_s)


def patient_sessions(ssh: SshPolicy, timeouts: Timeouts, *,
                     max_wait_s: float = 30.0) -> PatientSessionFactory:
    """A transaction session factory whose sessions wait for a busy candidate lock."""
    return PatientSessionFactory(ssh, timeouts, max_wait_s=max_wait_s)
