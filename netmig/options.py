"""The knobs of one migration, as one immutable value object passed in explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from netmig.check import ConflictPolicy
from netmig.model import PolicyKind
from netmig.settings import CommitPolicy, SshPolicy, Timeouts

__all__ = ["MigrationOptions", "Mode"]


class Mode(StrEnum):
    """How policies travel (seed draft sections 4 to 6)."""

    CENTRALIZED = "centralized"
    MIDDLE = "middle"
    D_PUSH = "d-push"
    D_PULL = "d-pull"


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    """What the user allows and how netmig talks to devices.

    ``allow_drop``: policy kinds that may be left behind when a destination cannot express them (they
    are named in the result). ``cleanup_source``: after SUCCESS, remove the VM's entries from the source
    devices in a second confirmed transaction (make before break).
    """

    mode: Mode = Mode.CENTRALIZED
    allow_drop: frozenset[PolicyKind] = frozenset()
    on_conflict: ConflictPolicy = ConflictPolicy.FAIL
    dry_run: bool = False
    cleanup_source: bool = False
    seed_ttl_s: int = 300
    commit: CommitPolicy = field(default_factory=CommitPolicy)
    ssh: SshPolicy = field(default_factory=SshPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
