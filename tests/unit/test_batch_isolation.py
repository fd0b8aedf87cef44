"""netmig.batch_isolation: which VMs of a rolled-back d-push / d-pull group are tried again, in which
groups, and when it stops (pure: the tries are scripted here; the real ones are in
tests/sim/test_batch_distributed.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netmig.batch_isolation import Attempt, isolate, max_depth

VMS = [f"vm-{i}" for i in range(8)]


def _lab(fails: Callable[[Sequence[str]], Attempt | None]) -> tuple[list[tuple[str, tuple[str, ...]]],
                                                                    Callable[[str, Sequence[str]], Attempt]]:
    """A try that records (group id, VMs) and moves everything unless ``fails`` says otherwise."""
    log: list[tuple[str, tuple[str, ...]]] = []

    def attempt(gid: str, part: Sequence[str]) -> Attempt:
        log.append((gid, tuple(part)))
        return fails(part) or Attempt(dict.fromkeys(part))

    return log, attempt


def _rolled_back(part: Sequence[str], why: str, *, blamed: dict[str, str] | None = None,
                 unattributed: bool = False, retryable: bool = False, stuck: tuple[str, ...] = ()) -> Attempt:
    return Attempt({vm: f"rolled back: {why}" for vm in part}, blamed or {}, unattributed, retryable, stuck)


def test_a_blamed_vm_is_left_out_and_the_others_tried_once_more() -> None:
    log, attempt = _lab(lambda part: _rolled_back(part, "vm-5 refused", blamed={"vm-5": "refused"},
                                                  retryable=True) if "vm-5" in part else None)
    done = isolate("g0", VMS, attempt, str)
    assert [g for g, _ in log] == ["g0", "g0-r1"] and log[1][1] == tuple(v for v in VMS if v != "vm-5")
    assert {vm for vm, e in done.errors.items() if e is not None} == {"vm-5"}
    assert "left out, the others tried again as g0-r1" in (done.errors["vm-5"] or "")
    assert done.tries["vm-0"] == ("g0", "g0-r1") and done.tries["vm-5"] == ("g0",) and done.retries == 1


def test_an_unattributed_failure_is_halved_down_to_the_vm_failing_alone() -> None:
    log, attempt = _lab(lambda part: _rolled_back(part, "silence", unattributed=True, retryable=True)
                        if "vm-6" in part else None)
    done = isolate("g0", VMS, attempt, str)
    assert [p for _, p in log] == [tuple(VMS), tuple(VMS[:4]), tuple(VMS[4:]), ("vm-4", "vm-5"),
                                   ("vm-6", "vm-7"), ("vm-6",), ("vm-7",)]
    assert {vm for vm, e in done.errors.items() if e is not None} == {"vm-6"}
    assert (done.errors["vm-6"] or "").endswith("(tried in g0, g0-r2, g0-r4, g0-r5)")
    assert done.retries == 6 <= 2 * max_depth(len(VMS))


def test_a_failure_that_is_not_a_transfer_failure_is_not_tried_again() -> None:
    log, attempt = _lab(lambda part: _rolled_back(part, "b-spine1: stage: refused"))
    done = isolate("g0", VMS, attempt, str)
    assert [g for g, _ in log] == ["g0"]
    assert all(e == "rolled back: b-spine1: stage: refused" for e in done.errors.values())


def test_an_incomplete_rollback_stops_every_retry_of_the_group() -> None:
    def fails(part: Sequence[str]) -> Attempt | None:
        if len(part) == len(VMS):
            return _rolled_back(part, "silence", unattributed=True, retryable=True)
        if "vm-0" in part:  # the first half: its rollback fails on b-fw1
            return _rolled_back(part, "silence; NOT rolled back on b-fw1", unattributed=True,
                                retryable=True, stuck=("b-fw1",))
        return None

    log, attempt = _lab(fails)
    done = isolate("g0", VMS, attempt, str)
    assert [g for g, _ in log] == ["g0", "g0-r1"]  # the second half (g0-r2) is never run
    assert all(e is not None for e in done.errors.values())
    assert all("not tried again: g0-r1 was not rolled back on b-fw1" in (done.errors[vm] or "")
               for vm in VMS[4:])


def test_retries_are_bounded_when_every_try_fails() -> None:
    log, attempt = _lab(lambda part: _rolled_back(part, "silence", unattributed=True, retryable=True))
    done = isolate("g0", VMS, attempt, str)
    assert done.retries <= 2 * max_depth(len(VMS)) and len(log) == done.retries + 1
    assert all(e is not None for e in done.errors.values())
    assert any("retries are spent" in (e or "") for e in done.errors.values())
    log, attempt = _lab(lambda part: _rolled_back(part, "silence", unattributed=True, retryable=True))
    isolate("g0", VMS, attempt, str, budget=0)
    assert len(log) == 1
