"""recovery_decision when the coordinator died while compensating (issue 6): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from netmig.journal import MigrationRecord, Step, StepRecord
from netmig.recovery_rules import RecoveryAction, recovery_decision

Rec = tuple[str, str, str | None, bool | None]


def make(*steps: Rec) -> MigrationRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return MigrationRecord("m1", "vm-7", "centralized", "a", "b", ("leaf-b1", "fw-b", "nat-b"), {}, at,
                           tuple(StepRecord(seq=i, device=d, step=Step(s), at=at, persist_id=p, ok=ok)
                                 for i, (d, s, p, ok) in enumerate(steps)))


def confirmed_then_fw_failed() -> list[Rec]:
    steps: list[Rec] = []
    for dev in ("leaf-b1", "fw-b", "nat-b"):
        steps += [(dev, "edit", None, None), (dev, "commit-confirmed", f"p-{dev}", None),
                  (dev, "verify", None, True)]
    steps += [("leaf-b1", "confirm", None, None), ("nat-b", "confirm", None, None),
              ("fw-b", "confirm", None, None), ("leaf-b1", "confirm", None, True),
              ("nat-b", "confirm", None, True)]
    return steps


def test_before_compensation_began_recovery_still_completes() -> None:
    decision = recovery_decision(make(*confirmed_then_fw_failed()))
    assert decision.complete and decision.action("fw-b") is RecoveryAction.CONFIRM


def test_killed_mid_compensation_rolls_back_every_device() -> None:
    steps = [
        *confirmed_then_fw_failed(), ("leaf-b1", "compensate", None, None),
        ("nat-b", "compensate", None, None),
        ("leaf-b1", "compensate-commit", "u-leaf", None), ("leaf-b1", "compensate-verify", None, None),
        ("leaf-b1", "compensate-confirm", None, None), ("leaf-b1", "compensate-confirm", None, True)]
    decision = recovery_decision(make(*steps))
    assert not decision.complete
    assert decision.action("leaf-b1") is RecoveryAction.NOTHING          # compensated and confirmed
    assert decision.action("nat-b") is RecoveryAction.COMPENSATE         # confirmed, undo not finished
    assert decision.action("fw-b") is RecoveryAction.COMPENSATE          # its pending commit is cancelled
    assert {d.device: d.persist_id for d in decision.devices}["fw-b"] == "p-fw-b"


def test_a_cancelled_failed_device_needs_nothing_once_compensation_began() -> None:
    steps = [*confirmed_then_fw_failed(), ("leaf-b1", "compensate", None, None),
             ("fw-b", "cancel", "p-fw-b", None), ("fw-b", "cancel", None, True)]
    decision = recovery_decision(make(*steps))
    assert decision.action("fw-b") is RecoveryAction.NOTHING
    assert decision.action("leaf-b1") is RecoveryAction.COMPENSATE
