"""BusyRetry: one call retried while a device is busy, or a whole multi-device attempt started over."""

from __future__ import annotations

import itertools
import time

import pytest

from netmig.errors import RpcError, RpcErrorInfo
from netmig.quirks import BusyRetry, quirk_profile


class _Held(Exception):
    """Stands for "another coordinator held a device; everything was given back"."""


def _busy_error(tag: str = "lock-denied") -> RpcError:
    info = RpcErrorInfo("protocol", tag, message="candidate is locked by session 7")
    return RpcError("dev1", "lock", [info])


def test_again_starts_over_until_the_attempt_gets_through() -> None:
    calls: list[float] = []

    def attempt() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise _Held("b-leaf1")
        return "done"

    assert BusyRetry(max_wait_s=5).again(attempt, busy=lambda e: isinstance(e, _Held)) == "done"
    assert len(calls) == 4
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(g >= 0.02 for g in gaps)  # paused (jittered, at least half of 0.05 s) before each new attempt


def test_again_raises_other_errors_at_once() -> None:
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not busy")

    with pytest.raises(ValueError):
        BusyRetry(max_wait_s=5).again(attempt, busy=lambda e: isinstance(e, _Held))
    assert calls == 1


def test_again_gives_up_after_the_bound() -> None:
    started = time.monotonic()

    def attempt() -> None:
        raise _Held("b-leaf1")

    with pytest.raises(_Held):
        BusyRetry(max_wait_s=0.4).again(attempt, busy=lambda e: isinstance(e, _Held))
    assert 0.3 <= time.monotonic() - started < 1.5


def test_run_retries_a_held_lock_only_when_asked_on_an_rfc_server() -> None:
    rfc = quirk_profile("rfc6241")
    tries = 0

    def lock() -> None:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise _busy_error()

    with pytest.raises(RpcError):  # the profile alone does not make a lock wait
        BusyRetry(max_wait_s=2, min_interval_s=0.01).run(rfc, lock)
    assert tries == 1
    BusyRetry(max_wait_s=2, min_interval_s=0.01).run(rfc, lock, always=True)
    assert tries == 3


def test_run_does_not_retry_other_errors() -> None:
    tries = 0

    def edit() -> None:
        nonlocal tries
        tries += 1
        raise _busy_error("invalid-value")

    with pytest.raises(RpcError):
        BusyRetry(max_wait_s=2, min_interval_s=0.01).run(quirk_profile("rfc6241"), edit, always=True)
    assert tries == 1
