"""In-process admission to devices for concurrent migrations of one coordinator.

A device holds one candidate lock and one pending confirmed commit at a time, so migrations sharing a
device (every VM of a site goes through its spine and middleboxes) take turns there whatever netmig
does. Left to the devices, concurrent transactions each lock some shared devices and wait for the
others, time out, roll back and retry: with 16 at once on three shared devices that is a livelock
that moves almost nothing. :func:`holding` lets the migrations of one process queue for the devices
they will write instead, taking them in one global order (no deadlock), before the first lock; other
processes still meet the device's own lock and the busy retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from netmig.settings import DeviceEndpoint

__all__ = ["held_s", "holding"]

_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}
_held_s: dict[str, float] = {}  # seconds each device was held, since the process started


def held_s() -> dict[str, float]:
    """Seconds each device (``host:port``) has been held by a migration of this process (benchmarks:
    when the busiest device was held for about the whole wall time, that device bounds the throughput)."""
    with _guard:
        return dict(_held_s)


@contextmanager
def holding(endpoints: Iterable[DeviceEndpoint]) -> Iterator[None]:
    """Hold every device in ``endpoints`` (by address) against other migrations of this process."""
    keys = sorted({f"{e.host}:{e.port}" for e in endpoints})
    with _guard:
        locks = [_locks.setdefault(k, threading.Lock()) for k in keys]
    taken: list[threading.Lock] = []
    since = 0.0
    try:
        for lock in locks:
            lock.acquire()
            taken.append(lock)
        since = time.monotonic()
        yield
    finally:
        if since:
            spent = time.monotonic() - since
            with _guard:
                for key in keys:
                    _held_s[key] = _held_s.get(key, 0.0) + spent
        for lock in reversed(taken):
            lock.release()
