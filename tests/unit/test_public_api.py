"""The public API is pinned: adding or removing a name is a deliberate change to this list."""

from __future__ import annotations

import netmig

PINNED = [
    "CommitPolicy",
    "ConflictPolicy",
    "DeviceOutcome",
    "MigrationOptions",
    "MigrationResult",
    "Mode",
    "NetmigError",
    "Outcome",
    "PolicyKind",
    "SshPolicy",
    "Timeouts",
    "VmBundle",
    "__version__",
    "load_topology",
    "migrate",
    "resolve",
]


def test_all_is_pinned_and_sorted() -> None:
    assert netmig.__all__ == PINNED
    assert sorted(netmig.__all__) == netmig.__all__


def test_every_public_name_resolves() -> None:
    for name in netmig.__all__:
        assert getattr(netmig, name) is not None, name


def test_migrate_is_the_library_front_door() -> None:
    from netmig.api import migrate

    assert netmig.migrate is migrate
    assert netmig.NetmigError.exit_code == 1
