"""Migration Feedback: what happened, overall and on each device, as plain values with a JSON form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["DeviceOutcome", "DevicePhase", "MigrationResult", "Outcome"]


class Outcome(StrEnum):
    """The answer the VM manager waits for."""

    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


class DevicePhase(StrEnum):
    """How far one device got in the network-wide transaction (each value is also a step name)."""

    PENDING = "pending"
    CONNECTED = "connected"
    CHECKED = "checked"
    LOCKED = "locked"
    EDITED = "edited"
    VALIDATED = "validated"
    COMMITTED = "committed"          # confirmed commit pending, reverts by itself on timeout
    VERIFIED = "verified"
    CONFIRMED = "confirmed"
    DONE = "done"                    # confirmed and unlocked
    PLANNED = "planned"              # dry run: computed, nothing sent
    DISCARDED = "discarded"          # failed before commit; candidate discarded
    ROLLED_BACK = "rolled-back"      # committed, then cancel-commit succeeded
    COMPENSATED = "compensated"      # confirmed, then undone by its own confirmed commit (another failed)
    ROLLBACK_FAILED = "rollback-failed"


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    """One device's part in a migration."""

    device: str
    phase_reached: DevicePhase
    ok: bool
    error: str | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "phase_reached": self.phase_reached.value, "ok": self.ok,
                "error": self.error, "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """The Migration Feedback of one migration."""

    migration_id: str
    vm_id: str
    mode: str
    outcome: Outcome
    devices: tuple[DeviceOutcome, ...] = ()
    moved: Mapping[str, int] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "vm_id": self.vm_id,
            "mode": self.mode,
            "outcome": self.outcome.value,
            "devices": [d.to_dict() for d in self.devices],
            "moved": dict(sorted(self.moved.items())),
            "dropped": list(self.dropped),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "conflicts": list(self.conflicts),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """Stable JSON (keys in a fixed order) for callbacks, journals and ``--json``."""
        return json.dumps(self.to_dict(), indent=indent)
