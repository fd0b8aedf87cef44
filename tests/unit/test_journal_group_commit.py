"""The SQLite journal's group commit: step records journaled by many threads at the same moment share
transactions, yet each is durable when ``record`` returns and a bad one fails alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from netmig.journal import SqliteJournal, Step


def test_records_of_many_threads_are_all_written_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    devices = [f"d{i:02d}" for i in range(24)]
    path = tmp_path / "journal.sqlite"
    errors: dict[str, BaseException] = {}
    start = threading.Barrier(len(devices) + 1)
    with SqliteJournal(path) as journal:
        journal.begin("m1", "vm-1", "centralized", "h1", "h2", devices, {})

        def step(device: str) -> None:
            start.wait()
            for kind in (Step.LOCK, Step.EDIT, Step.COMMIT_CONFIRMED):
                try:
                    journal.record("m1", device if device != "d07" or kind is not Step.EDIT else "stranger",
                                   kind, persist_id="p" if kind is Step.COMMIT_CONFIRMED else None)
                except ValueError as exc:
                    errors[device] = exc

        threads = [threading.Thread(target=step, args=(d,)) for d in devices]
        for thread in threads:
            thread.start()
        start.wait()
        for thread in threads:
            thread.join()
    assert list(errors) == ["d07"] and "stranger" in str(errors["d07"])
    with SqliteJournal(path) as journal:  # reopened: everything returned was durable
        record = journal.get("m1")
    steps = [(s.device, s.step) for s in record.steps]
    assert len(steps) == 3 * len(devices) - 1
    for device in devices:  # each thread's records in the order it journaled them
        mine = [kind for name, kind in steps if name == device]
        assert mine == ([Step.LOCK, Step.COMMIT_CONFIRMED] if device == "d07"
                        else [Step.LOCK, Step.EDIT, Step.COMMIT_CONFIRMED])
    assert [s.seq for s in record.steps] == sorted(s.seq for s in record.steps)


def test_a_record_for_a_finished_migration_is_refused(tmp_path: Path) -> None:
    from netmig.journal import MigrationFinishedError, UnknownMigrationError

    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        journal.begin("m1", "vm-1", "centralized", "h1", "h2", ["d1"], {})
        journal.finish("m1", "success", {})
        with pytest.raises(MigrationFinishedError):
            journal.record("m1", "d1", Step.LOCK)
        with pytest.raises(UnknownMigrationError):
            journal.record("m2", "d1", Step.LOCK)


def test_a_batch_group_holds_each_of_its_vms_like_a_single_migration(tmp_path: Path) -> None:
    from netmig.journal import MigrationInProgressError

    group = {"group": {"batch-id": "b", "number": 0, "vms": [{"vm": "vm-1"}, {"vm": "vm-2"}]}}
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        journal.begin("b-g0", "b-g0", "centralized", "h1", "h2", ["d1"], group)
        assert journal.get("b-g0").vms == ("vm-1", "vm-2")
        with pytest.raises(MigrationInProgressError) as single:
            journal.begin("m1", "vm-2", "centralized", "h1", "h2", ["d1"], {})
        assert single.value.migration_id == "b-g0"
        journal.begin("m3", "vm-3", "centralized", "h1", "h2", ["d1"], {})
        other = {"group": {"vms": [{"vm": "vm-4"}, {"vm": "vm-3"}]}}
        with pytest.raises(MigrationInProgressError) as second:
            journal.begin("b-g1", "b-g1", "centralized", "h1", "h2", ["d1"], other)
        assert (second.value.vm_id, second.value.migration_id) == ("vm-3", "m3")
        journal.finish("b-g0", "success", {})
        journal.begin("m1", "vm-2", "centralized", "h1", "h2", ["d1"], {})  # the group is finished
