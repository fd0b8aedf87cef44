"""A journaled batch (netmig.batch_journal): one journaled migration per group, over SSH to a generated
fabric; what the journal holds afterwards, and what a batch does with a VM an unfinished migration holds."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import batchlab
import pytest

from netmig.batch import BatchItem, migrate_many
from netmig.cli import main
from netmig.errors import InputError
from netmig.feedback import Outcome
from netmig.journal import SqliteJournal, Step
from netmig.journal_hook import coordinator_identity
from netmig.options import MigrationOptions, Mode
from netmig.recovery import recover, rollback_migration
from netmig.xmlkit import parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site"


def _items(gen: Any) -> list[BatchItem]:
    return [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]


def test_each_group_is_journaled_as_one_migration_listing_its_vms(tmp_path: Path, schema_cache: Any,
                                                                  fabricgen: Any) -> None:
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    path = tmp_path / "journal.sqlite"
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ), \
            SqliteJournal(path) as journal:
        result = migrate_many(items, topology=topo, environ=environ, workers=2, group_size=2, journal=journal)
        assert set(result.succeeded) == {i.vm for i in items}
        assert batchlab.vms_in_running(fabric, "b-") == {i.vm for i in items}
        records = list(reversed(journal.history()))
        assert len(records) == 2 and journal.unfinished() == []
        for number, record in enumerate(records):
            members = {r.vm for r in result.results if r.group == number}
            assert record.migration_id.endswith(f"-g{number}") and record.vm_id == record.migration_id
            assert record.outcome == "success" and not record.recovered and record.mode == "centralized"
            assert set(record.vms) == members and record.group is not None
            # every destination: journaled before and confirmed, under the persist-id it was sent
            confirmed = {s.device for s in record.steps if s.step is Step.CONFIRM and s.ok is True}
            assert confirmed == set(record.devices)
            assert record.persist_ids == record.plan["persist-ids"]
            # the plan holds what recovery needs: the merged edit (naming every VM the device took), its undo
            destinations = record.plan["destinations"]
            assert isinstance(destinations, dict) and set(destinations) == set(record.devices)
            for name, entry in destinations.items():
                parse(entry["edit"]), parse(entry["undo"])
                if name.startswith("b-leaf"):
                    on_leaf = {vm for vm in members if vm in entry["edit"]}
                    assert on_leaf and on_leaf <= members
        with pytest.raises(InputError, match="batch group"):
            rollback_migration(journal, records[0].migration_id, environ=environ)
    out = io.StringIO()
    assert main(["history", "--journal", str(path), "--json"], out=out, err=io.StringIO()) == 0
    listed = json.loads(out.getvalue())
    assert [sorted(r["vms"]) for r in reversed(listed)] == [sorted(r.vms) for r in records]
    assert all(r["group"] for r in listed)


def test_a_vm_an_unfinished_migration_holds_is_left_out_and_the_others_move(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """A group of another coordinator that is still running (this process) holds vm-00001: recovery
    leaves it alone, and the batch moves the three others without touching vm-00001."""
    gen = fabricgen.generate(4, leaves=2)
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ), \
            SqliteJournal(tmp_path / "journal.sqlite") as journal:
        journal.begin("other-g0", "other-g0", "centralized", "h", "h", ["b-leaf01"],
                      {"coordinator": coordinator_identity(), "group": {"vms": [{"vm": "vm-00001"}]},
                       "devices": {"b-leaf01": {"role": "destination"}}})
        result = migrate_many(_items(gen), topology=topo, environ=environ, workers=2, journal=journal)
        (failed,) = result.failed
        assert failed.vm == "vm-00001" and failed.outcome is Outcome.FAIL
        assert failed.error is not None and "other-g0" in failed.error
        assert batchlab.vms_in_running(fabric, "b-") == {"vm-00000", "vm-00002", "vm-00003"}
        assert [r.migration_id for r in journal.unfinished()] == ["other-g0"]
        (skipped,) = recover(journal, environ=environ)
        assert skipped.skipped is not None and skipped.vms == ("vm-00001",)


@pytest.mark.parametrize("mode", [Mode.D_PUSH, Mode.D_PULL])
def test_a_distributed_batch_journals_each_try_of_a_group(mode: Mode, tmp_path: Path, schema_cache: Any,
                                                           fabricgen: Any) -> None:
    """b-leaf01 refuses every import: the group's first try is rolled back everywhere and journaled so,
    closed before its retry (the leaf-00 VMs, under ``<group>-r1``) is journaled and committed; each
    record holds the devices' roles, the persist-ids derived from its own id and each VM's migration id."""
    from netmig.model import PolicyKind
    from netmig.modes.settle import persist_id_for

    gen = fabricgen.generate(4, leaves=2)
    options = MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}))
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ), \
            SqliteJournal(tmp_path / "journal.sqlite") as journal:
        fabric.device("b-leaf01").migration.fail_import = True
        result = migrate_many(_items(gen), topology=topo, environ=environ, workers=2, journal=journal,
                              options=options)
        assert set(result.succeeded) == {"vm-00000", "vm-00002"}, [r.error for r in result.failed]
        first, retry = reversed(journal.history())
        assert journal.unfinished() == [] and retry.migration_id == f"{first.migration_id}-r1"
        assert first.mode == retry.mode == mode.value
        assert first.outcome == "rolled-back" and set(first.vms) == {i.vm for i in _items(gen)}
        assert retry.outcome == "success" and set(retry.vms) == {"vm-00000", "vm-00002"}
        assert first.finished_at is not None and first.finished_at <= retry.started_at
        for record in (first, retry):
            roles = record.plan["devices"]
            assert isinstance(roles, dict)
            destinations = {n for n, e in roles.items() if e["role"] == "destination"}
            assert {"b-fw1", "b-leaf00", "b-spine1"} <= destinations
            assert "bridge" in {e["role"] for e in roles.values()} or mode is Mode.D_PULL
            assert record.plan["persist-ids"] == {n: persist_id_for(record.migration_id, n)
                                                  for n in destinations}
            committed = {s.device: s.persist_id for s in record.steps
                         if s.step is Step.COMMIT_CONFIRMED and s.persist_id}
            assert committed == record.plan["persist-ids"]
            assert "b-spine1" in record.plan["di-only"]  # type: ignore[operator]
            mids = [m["di-migration-id"] for m in record.group["vms"]]  # type: ignore[index]
            assert mids == [f"{record.migration_id}-{n}" for n in range(len(mids))]
        cancelled = {s.device for s in first.steps if s.step is Step.CANCEL and s.ok is True}
        confirmed = {s.device for s in retry.steps if s.step is Step.CONFIRM and s.ok is True}
        assert cancelled == set(first.plan["persist-ids"])  # type: ignore[arg-type]
        assert confirmed == set(retry.plan["persist-ids"])  # type: ignore[arg-type]
        batchlab.wait_settled(fabric)
        for vm_id in ("vm-00000", "vm-00002"):
            batchlab.assert_moved(fabric, gen, vm_id)


def test_cli_batch_is_journaled_by_default_and_not_with_no_journal(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``netmig migrate --batch`` journals its group where ``netmig migrate`` journals (``$NETMIG_HOME``
    by default); ``--no-journal`` writes nothing there; ``netmig status`` lists the group's VMs."""
    monkeypatch.setenv("NETMIG_HOME", str(tmp_path / "home"))
    batch = tmp_path / "batch.csv"
    batch.write_text("vm,from,to\nvm-web-01,host-a1,host-b3\n")
    common = ["migrate", "--batch", str(batch), "--sim", str(EXAMPLE), "--sim-state", str(tmp_path / "sim"),
              "--allow-drop", "nd-entry"]
    out, err = io.StringIO(), io.StringIO()
    assert main([*common, "--no-journal"], out=out, err=err) == 0, err.getvalue()
    assert not (tmp_path / "home" / "journal.sqlite").exists()
    out, err = io.StringIO(), io.StringIO()
    assert main([*common, "--mode", "middle"], out=out, err=err) == 0, err.getvalue()
    with SqliteJournal(tmp_path / "home" / "journal.sqlite") as journal:
        (record,) = journal.history()
    assert record.outcome == "success" and record.mode == "middle" and record.vms == ("vm-web-01",)
    assert record.group is not None and record.group["vms"][0]["di-migration-id"]  # type: ignore[index]
    out = io.StringIO()
    assert main(["status", "--json"], out=out, err=io.StringIO()) == 0
    last = json.loads(out.getvalue())["last"]
    assert last["migration_id"] == record.migration_id and last["vms"] == ["vm-web-01"] and last["group"]
    # d-push: journaled too (a fresh fabric, the same journal)
    fresh = [str(tmp_path / "sim-d-push") if arg == str(tmp_path / "sim") else arg for arg in common]
    out, err = io.StringIO(), io.StringIO()
    assert main([*fresh, "--mode", "d-push"], out=out, err=err) == 0, err.getvalue() + out.getvalue()
    with SqliteJournal(tmp_path / "home" / "journal.sqlite") as journal:
        latest = journal.history()[0]
    assert latest.mode == "d-push" and latest.outcome == "success" and latest.vms == ("vm-web-01",)
