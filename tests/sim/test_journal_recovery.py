"""The journal in the migration path: status, history, rollback, refusals, no secrets; real NETCONF."""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_sigkill import DESTINATIONS, EXAMPLE, SOURCES, lab, snapshot

from netmig.api import migrate
from netmig.cli import main
from netmig.errors import InputError
from netmig.feedback import MigrationResult
from netmig.journal import MigrationInProgressError, SqliteJournal, Step
from netmig.model import PolicyKind
from netmig.options import MigrationOptions
from netmig.recovery import recover, rollback_migration

_EMPTY = re.compile(rb"<(?:preload|slb)/>")  # empty non-presence containers: the same data as none

def migrated(vm: str, **kwargs: Any) -> MigrationResult:
    """``netmig.migrate`` for a real (not dry) run."""
    result = migrate(vm, **kwargs)
    assert isinstance(result, MigrationResult)
    return result


OPTIONS = MigrationOptions(allow_drop=frozenset({PolicyKind("nd-entry")}))


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_migrate_journals_then_rollback_restores_every_device(fresh_fabric: Callable[..., Any],
                                                              tmp_path: Path) -> None:
    # the example's passwords equal its usernames: give each device a password of its own to grep for
    example = tmp_path / "two-site"
    shutil.copytree(EXAMPLE, example)
    fabric_text = (example / "fabric.yaml").read_text()
    secrets_used = []
    while "password: admin" in fabric_text:
        secrets_used.append(f"pw-{secrets.token_hex(8)}")
        fabric_text = fabric_text.replace("password: admin", f"password: {secrets_used[-1]}", 1)
    (example / "fabric.yaml").write_text(fabric_text)
    topology, environ = lab(fresh_fabric(example / "fabric.yaml"))
    assert secrets_used and set(environ.values()) <= set(secrets_used)
    before = snapshot(topology, environ, DESTINATIONS + SOURCES)
    path = tmp_path / "journal.sqlite"
    with SqliteJournal(path) as journal:
        result = migrated("vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                         options=OPTIONS, environ=environ, journal=journal)
        record = journal.get(result.migration_id)
        assert record.outcome == "success" and set(record.devices) == set(DESTINATIONS)
        assert {s.device for s in record.steps if s.step is Step.CONFIRM and s.ok} == set(DESTINATIONS)
        assert all(record.persist_ids[d] for d in DESTINATIONS)
        moved = snapshot(topology, environ, DESTINATIONS)
        assert all(moved[d] != before[d] for d in DESTINATIONS)

        undo = rollback_migration(journal, result.migration_id, environ=environ)
        assert all(d.ok for d in undo.devices)
        after = snapshot(topology, environ, DESTINATIONS + SOURCES)
        assert {s: after[s] for s in SOURCES} == {s: before[s] for s in SOURCES}
        for device in DESTINATIONS:  # none of the VM's entries is left on any destination
            assert b"vm-web-01" not in after[device] and b"52:54:00:10:00:01" not in after[device].lower()
        # an empty non-presence container is the same data as none
        assert {d: _EMPTY.sub(b"", after[d]) for d in ("b-fw1", "b-nat1", "b-spine1")} == {
            d: before[d] for d in ("b-fw1", "b-nat1", "b-spine1")}
        rb = journal.get(undo.migration_id)
        assert rb.mode == "rollback" and rb.outcome == "success"
        assert rb.plan["rollback-of"] == result.migration_id
        with pytest.raises(InputError, match="already rolled back"):
            rollback_migration(journal, result.migration_id, environ=environ)
        with pytest.raises(InputError, match="itself a rollback"):
            rollback_migration(journal, undo.migration_id, environ=environ)
    # no password of the simulator ever reaches the journal file (WAL included)
    for file in tmp_path.glob("journal.sqlite*"):
        data = file.read_bytes()
        for password in secrets_used:
            assert password.encode() not in data


def test_status_history_and_json(fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    topology, environ = lab(fresh_fabric())
    path = tmp_path / "j.sqlite"
    with SqliteJournal(path) as journal:
        result = migrated("vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                         options=OPTIONS, environ=environ, journal=journal)
    code, out, _ = run_cli("status", "--journal", str(path))
    assert code == 0 and "no unfinished migrations" in out and result.migration_id in out
    code, out, _ = run_cli("history", "--journal", str(path))
    assert code == 0 and out.splitlines()[0].split()[:3] == ["MIGRATION", "VM", "MODE"]
    assert result.migration_id in out and "success" in out
    code, out, _ = run_cli("history", "--json", "--journal", str(path))
    (item,) = json.loads(out)
    assert item["migration_id"] == result.migration_id and item["outcome"] == "success"
    assert {s["device"] for s in item["steps"]} == set(DESTINATIONS)
    code, out, _ = run_cli("recover", "--journal", str(path))
    assert code == 0 and "nothing to recover" in out
    code, _, err = run_cli("rollback", "mig-000000000000", "--journal", str(path))
    assert code == 2 and "not in the journal" in err


def test_second_migration_of_same_vm_is_refused_while_first_is_live(fresh_fabric: Callable[..., Any],
                                                                   tmp_path: Path) -> None:
    topology, environ = lab(fresh_fabric())
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        # a migration of this VM whose coordinator (this very process) is still running
        journal.begin("mig-live", "vm-web-01", "centralized", "host-a1", "host-b3", ["b-leaf1"],
                      {"coordinator": __import__("netmig.journal_hook").journal_hook.coordinator_identity()})
        with pytest.raises(MigrationInProgressError, match="mig-live"):
            migrated("vm-web-01", source="host-a1", destination="host-b3", topology=topology, options=OPTIONS,
                     environ=environ, journal=journal)
        assert [r.skipped for r in recover(journal, environ=environ)] == ["its coordinator is still running"]
        assert journal.get("mig-live").finished is False


def test_automatic_recovery_at_next_migrate(fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    """A dead coordinator's migration (no live pid) touching the same devices is recovered first."""
    topology, environ = lab(fresh_fabric())
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        journal.begin("mig-dead", "vm-web-01", "centralized", "host-a1", "host-b3", ["b-leaf1"],
                      {"coordinator": {"host": "elsewhere", "pid": 1}})
        journal.record("mig-dead", "b-leaf1", Step.LOCK)
        result = migrated("vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                         options=OPTIONS, environ=environ, journal=journal)
        dead = journal.get("mig-dead")
        assert dead.recovered and dead.outcome == "rolled-back"
        assert journal.get(result.migration_id).outcome == "success"


def test_rollback_restores_destination_bytes_exactly(fresh_fabric: Callable[..., Any],
                                                     tmp_path: Path) -> None:
    topology, environ = lab(fresh_fabric())
    before = snapshot(topology, environ, ("b-leaf1",))
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        result = migrated("vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                         options=OPTIONS, environ=environ, journal=journal)
        rollback_migration(journal, result.migration_id, environ=environ)
    after = snapshot(topology, environ, ("b-leaf1",))
    assert _EMPTY.sub(b"", after["b-leaf1"]) == before["b-leaf1"]
