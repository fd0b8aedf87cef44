"""The middle mode's transfer store keeps a migration's blobs only while the migration is unfinished.

A middle migration of vm-web-01 over examples/two-site stores each source's exported blob (opaque: the
test only lists which devices have one), then imports them inside the network-wide transaction. Whether
it succeeds or fails and is rolled back (b-fw1 refuses ``import-di``), the store holds nothing of it
afterwards; while the transaction runs (seen from the step hook) it does hold them. A journaled run
names the store in its plan (recovery drops the blobs of a migration it settles).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from test_fault_matrix import DESTINATION, OPTIONS, SOURCE, VM, fault_rule, settle, snapshot, two_site

from netmig.api import migrate
from netmig.errors import MigrationRolledBackError
from netmig.feedback import MigrationResult
from netmig.journal import SqliteJournal
from netmig.options import MigrationOptions, Mode
from netmig.store import Blob, SqliteStore
from netmig.transaction import Step

MIDDLE = MigrationOptions(mode=Mode.MIDDLE, allow_drop=OPTIONS.allow_drop, commit=OPTIONS.commit,
                          timeouts=OPTIONS.timeouts)


def _run(lab: Any, store: SqliteStore, migration_id: str, seen: list[list[str]],
         journal: SqliteJournal | None = None) -> Any:
    def on_step(device: str, step: Step) -> None:
        if step is Step.EDIT:  # the blobs are exported and stored before the first edit
            seen.append(store.devices(migration_id))

    return migrate(VM, source=SOURCE, destination=DESTINATION, topology=lab.topology, environ=lab.environ,
                   options=MIDDLE, migration_id=migration_id, store=store, journal=journal, on_step=on_step)


@pytest.mark.parametrize("journaled", [False, True], ids=["plain", "journaled"])
def test_a_failed_middle_run_leaves_no_blobs(schema_cache: Any, tmp_path: Path, journaled: bool) -> None:
    with two_site(tmp_path / "lab", schema_cache) as lab, SqliteStore(tmp_path / "store.sqlite") as store, \
            SqliteJournal(tmp_path / "journal.sqlite") as journal:
        before = snapshot(lab.fabric)
        rule = fault_rule("rpc-error", "import-di")
        assert rule is not None
        lab.fabric.device("b-fw1").faults.set(rule)
        seen: list[list[str]] = []
        with pytest.raises(MigrationRolledBackError):
            _run(lab, store, "mig-fails", seen, journal if journaled else None)
        assert lab.fabric.device("b-fw1").faults.fired, "the import fault never fired"
        assert seen and seen[0], "no blob was stored before the transaction"
        assert store.devices("mig-fails") == []
        if journaled:
            record = journal.get("mig-fails")
            assert record.outcome == "rolled-back"
            where = str((tmp_path / "store.sqlite").resolve())
            assert record.plan["di-store"] == {"kind": "sqlite", "path": where}
        settle(lab.fabric)
        assert snapshot(lab.fabric) == before


def test_a_successful_middle_run_leaves_no_blobs(schema_cache: Any, tmp_path: Path) -> None:
    with two_site(tmp_path / "lab", schema_cache) as lab, SqliteStore(tmp_path / "store.sqlite") as store:
        store.put("mig-other", "a-fw1", _blob())  # another migration's blob stays
        seen: list[list[str]] = []
        result = _run(lab, store, "mig-ok", seen)
        assert isinstance(result, MigrationResult) and result.ok
        assert seen and seen[0]
        assert store.devices("mig-ok") == []
        assert store.devices("mig-other") == ["a-fw1"]


def _blob() -> Blob:
    data = b"opaque"
    return Blob(data, "application/octet-stream", hashlib.sha256(data).hexdigest(), 1)
