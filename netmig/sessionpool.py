"""Session reuse: one open NETCONF session per device, shared across the phases of a migration and the VMs
of a batch.

Opening a session costs an SSH handshake, a NETCONF hello and (for checks) a yang-library read: ten times
an RPC. A :class:`SessionPool` opens each device's session on first use, hands the same one out again
while it is open, reopens it when it was lost, and closes everything on exit. A session is used by one
thread at a time: the pool hands out a per-device lock with it (:meth:`SessionPool.using`).
The pool also keeps each device's parsed yang-library, read once per session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from netmig.netconf.capabilities import Capabilities
from netmig.netconf.session import DeviceSession
from netmig.settings import DeviceEndpoint, SshPolicy, Timeouts

__all__ = ["SessionPool", "SnapshotCache"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class SnapshotCache:
    """Answers of reads that cannot change while a batch prepares, shared by several pools (threads):
    each (device, key) is read once, by the first thread that asks; the others wait for it."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], object] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, slot: tuple[str, str], read: Callable[[], T]) -> T:
        with self._guard:
            lock = self._locks.setdefault(slot, threading.Lock())
        with lock:
            if slot not in self._values:
                self._values[slot] = read()
            return self._values[slot]  # type: ignore[return-value]

    def clear(self) -> None:
        with self._guard:
            self._values.clear()


class SessionPool:
    """Open sessions by device name; thread-safe; close with :meth:`close` or as a context manager."""

    def __init__(self, *, ssh: SshPolicy | None = None, timeouts: Timeouts | None = None,
                 snapshot: bool | SnapshotCache = False) -> None:
        self._ssh = ssh if ssh is not None else SshPolicy()
        self._timeouts = timeouts if timeouts is not None else Timeouts()
        self._sessions: dict[str, DeviceSession] = {}
        self._libraries: dict[str, Capabilities] = {}
        # True or a SnapshotCache (shared with other pools): cached() reads once (see there); False: always
        self._cache = snapshot if isinstance(snapshot, SnapshotCache) else SnapshotCache()
        self._own_cache = not isinstance(snapshot, SnapshotCache)
        self.snapshot = bool(snapshot)
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self.opened = 0  # sessions opened over the pool's life (reuse shows as a small number)

    def _lock_for(self, name: str) -> threading.RLock:
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = threading.RLock()
            return lock

    def get(self, endpoint: DeviceEndpoint) -> DeviceSession:
        """The open session to ``endpoint`` (opened now if there is none or it was lost)."""
        with self._lock_for(endpoint.name):
            session = self._sessions.get(endpoint.name)
            if session is not None and session.is_open:
                return session
            session = DeviceSession(endpoint, ssh=self._ssh, timeouts=self._timeouts)
            session.open()
            self._libraries.pop(endpoint.name, None)
            with self._guard:
                self._sessions[endpoint.name] = session
                self.opened += 1
            return session

    @contextmanager
    def using(self, endpoint: DeviceEndpoint) -> Iterator[DeviceSession]:
        """The device's session, held exclusively by the calling thread for the ``with`` block."""
        lock = self._lock_for(endpoint.name)
        with lock:
            yield self.get(endpoint)

    def library(self, endpoint: DeviceEndpoint) -> Capabilities:
        """The device's yang-library (read once per session)."""
        with self._lock_for(endpoint.name):
            session = self.get(endpoint)
            caps = self._libraries.get(endpoint.name)
            if caps is None:
                caps = self._libraries[endpoint.name] = session.load_yang_library()
            return caps

    def cached(self, endpoint: DeviceEndpoint, key: str, read: Callable[[DeviceSession], T]) -> T:
        """``read(session)``; with ``snapshot`` once per device and key for the pool's life (for reads
        whose answer cannot change while the pool is in use, e.g. a batch's checks before its commits;
        with a shared SnapshotCache once for every pool sharing it)."""
        if not self.snapshot:
            with self._lock_for(endpoint.name):
                return read(self.get(endpoint))

        def first_read() -> T:
            with self._lock_for(endpoint.name):
                return read(self.get(endpoint))
        return self._cache.get((endpoint.name, key), first_read)

    def open_all(self, endpoints: Iterable[DeviceEndpoint], *, workers: int = 16) -> None:
        """Open sessions to many devices in parallel; raises the first failure."""
        with self._guard:
            todo = [ep for ep in endpoints
                    if (s := self._sessions.get(ep.name)) is None or not s.is_open]
        if not todo:  # all open already (a batch's every VM after the first): no threads
            return
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            futures = [pool.submit(self.get, ep) for ep in todo]
            errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def factory(self, endpoint: DeviceEndpoint) -> DeviceSession:
        """A :data:`netmig.transaction.SessionFactory` handing out pooled sessions."""
        return self.get(endpoint)

    def close(self) -> None:
        with self._guard:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._libraries.clear()
            if self._own_cache:
                self._cache.clear()
        for session in sessions:
            session.close()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
