"""The migration journal: durable write-ahead steps, one unfinished migration per VM, recovery decisions."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netmig.errors import InputError
from netmig.journal import (
    Journal,
    JournalError,
    MigrationFinishedError,
    MigrationInProgressError,
    MigrationRecord,
    SqliteJournal,
    Step,
    StepRecord,
    UnknownMigrationError,
    default_journal_path,
)
from netmig.recovery_rules import RecoveryAction, recovery_decision

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("leaf-b1", "fw-b")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SqliteJournal]:
    with SqliteJournal(tmp_path / "journal.sqlite") as opened:
        yield opened


def begin(
    journal: Journal, migration_id: str = "m1", vm_id: str = "vm-7", devices: tuple[str, ...] = DEVICES
) -> None:
    journal.begin(
        migration_id,
        vm_id,
        "centralized",
        "host-a",
        "host-b",
        devices,
        {"partners": {"leaf-a1": ["leaf-b1"]}},
    )


def test_round_trip_keeps_every_field_and_step_order(journal: SqliteJournal) -> None:
    begin(journal)
    journal.record("m1", "leaf-b1", "lock")
    journal.record("m1", "leaf-b1", Step.EDIT, detail={"acls": 2})
    journal.record("m1", "fw-b", "commit-confirmed", persist_id="p-fw")
    journal.record("m1", "leaf-b1", "commit-confirmed", persist_id="p-leaf")
    journal.record("m1", "leaf-b1", "verify", ok=True)
    journal.finish("m1", "success", {"devices": {"leaf-b1": "SUCCESS", "fw-b": "SUCCESS"}})

    rec = journal.get("m1")
    assert (rec.vm_id, rec.mode, rec.source_host, rec.destination_host) == (
        "vm-7",
        "centralized",
        "host-a",
        "host-b",
    )
    assert rec.devices == DEVICES
    assert rec.plan == {"partners": {"leaf-a1": ["leaf-b1"]}}
    assert [(s.device, s.step) for s in rec.steps] == [
        ("leaf-b1", Step.LOCK),
        ("leaf-b1", Step.EDIT),
        ("fw-b", Step.COMMIT_CONFIRMED),
        ("leaf-b1", Step.COMMIT_CONFIRMED),
        ("leaf-b1", Step.VERIFY),
    ]
    assert [s.seq for s in rec.steps] == sorted(s.seq for s in rec.steps)
    assert rec.steps[1].detail == {"acls": 2}
    assert rec.steps[4].ok is True and rec.steps[0].ok is None
    assert rec.last_steps["leaf-b1"].step is Step.VERIFY
    assert rec.last_steps["fw-b"].step is Step.COMMIT_CONFIRMED
    assert rec.persist_ids == {"fw-b": "p-fw", "leaf-b1": "p-leaf"}
    assert rec.finished and rec.outcome == "success" and not rec.recovered
    assert rec.summary == {"devices": {"leaf-b1": "SUCCESS", "fw-b": "SUCCESS"}}
    assert rec.finished_at is not None and rec.started_at <= rec.finished_at <= datetime.now(UTC)


def test_second_unfinished_migration_of_same_vm_is_refused_until_finished(journal: SqliteJournal) -> None:
    begin(journal, "m1")
    with pytest.raises(MigrationInProgressError) as info:
        begin(journal, "m2")
    assert info.value.migration_id == "m1" and isinstance(info.value, InputError)
    begin(journal, "other-vm", vm_id="vm-8")  # another VM is fine
    journal.finish("m1", "rolled-back", {})
    begin(journal, "m2")
    assert [r.migration_id for r in journal.unfinished()] == ["other-vm", "m2"]


def test_refusal_holds_across_two_connections(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with SqliteJournal(path) as one, SqliteJournal(path) as two:
        begin(one, "m1")
        with pytest.raises(MigrationInProgressError):
            begin(two, "m2")


def test_unfinished_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with SqliteJournal(path) as first:
        begin(first, "m1")
        first.record("m1", "fw-b", "commit-confirmed", persist_id="p1")
        begin(first, "m2", vm_id="vm-9")
        first.finish("m2", "success", {})
    with SqliteJournal(path) as again:
        pending = again.unfinished()
    assert [r.migration_id for r in pending] == ["m1"]
    assert pending[0].persist_ids == {"fw-b": "p1"}


def test_mark_recovered_seals_the_migration(journal: SqliteJournal) -> None:
    begin(journal)
    journal.record("m1", "fw-b", "commit-confirmed", persist_id="p1")
    journal.mark_recovered("m1", "rolled-back", "cancel-commit p1 on fw-b")
    rec = journal.get("m1")
    assert rec.recovered and rec.outcome == "rolled-back" and rec.recovery_note == "cancel-commit p1 on fw-b"
    assert journal.unfinished() == []
    with pytest.raises(MigrationFinishedError):
        journal.record("m1", "fw-b", "cancel")
    with pytest.raises(MigrationFinishedError):
        journal.finish("m1", "success", {})


def test_bad_input_is_refused(journal: SqliteJournal) -> None:
    with pytest.raises(UnknownMigrationError):
        journal.get("nope")
    with pytest.raises(UnknownMigrationError):
        journal.record("nope", "fw-b", "lock")
    begin(journal)
    with pytest.raises(ValueError, match="already journaled"):
        journal.begin("m1", "vm-other", "centralized", "a", "b", ["x"], {})
    with pytest.raises(ValueError, match="unknown step"):
        journal.record("m1", "fw-b", "commit")
    with pytest.raises(ValueError, match="not part of it"):
        journal.record("m1", "leaf-zz", "lock")
    with pytest.raises(ValueError, match="JSON"):
        journal.record("m1", "fw-b", "edit", detail={"when": datetime.now(UTC)})
    with pytest.raises(ValueError, match="distinct"):
        journal.begin("m9", "vm-9", "centralized", "a", "b", ["x", "x"], {})
    assert journal.get("m1").steps == ()


@pytest.mark.parametrize(
    "payload",
    [
        {"password": "x"},
        {"auth": {"Enable-Secret": "x"}},
        {"devices": [{"name": "fw", "ssh_private_key": "k"}]},
        {"a": {"b": {"c": {"key_passphrase": "p"}}}},
        {"privateKey": "k"},
    ],
)
def test_secrets_are_refused_at_any_depth(journal: SqliteJournal, payload: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="secret"):
        journal.begin("m1", "vm-7", "centralized", "a", "b", ["fw-b"], payload)
    journal.begin("m1", "vm-7", "centralized", "a", "b", ["fw-b"], {"keys": ["ok"]})
    with pytest.raises(ValueError, match="secret"):
        journal.record("m1", "fw-b", "edit", detail=payload)
    with pytest.raises(ValueError, match="secret"):
        journal.finish("m1", "success", payload)
    assert journal.get("m1").steps == () and not journal.get("m1").finished


def test_wal_and_synchronous_full_are_in_effect(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with SqliteJournal(path) as journal:
        settings = journal.storage_settings()
        assert settings["journal_mode"] == "wal"
        assert settings["synchronous"] == 2  # FULL
        assert settings["foreign_keys"] == 1
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    finally:
        other.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(JournalError, match="newer"):
        SqliteJournal(path)


def test_default_path_follows_netmig_home(tmp_path: Path) -> None:
    assert default_journal_path({"NETMIG_HOME": str(tmp_path)}) == tmp_path / "journal.sqlite"
    assert default_journal_path({}) == Path.home() / ".local/state/netmig/journal.sqlite"


CHILD = textwrap.dedent(
    """
    import sys, time
    from netmig.journal import SqliteJournal
    j = SqliteJournal(sys.argv[1])
    j.begin("m1", "vm-7", "centralized", "host-a", "host-b", ["leaf-b1", "fw-b"], {})
    n = 0
    while True:
        device = "leaf-b1" if n % 2 else "fw-b"
        j.record("m1", device, "commit-confirmed", persist_id=f"p{n}")
        print(n, flush=True)
        n += 1
    """
)


def test_steps_acknowledged_before_sigkill_are_readable(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert child.stdout is not None
    acknowledged = [int(child.stdout.readline()) for _ in range(25)]
    os.kill(child.pid, signal.SIGKILL)  # mid-loop: no close(), no checkpoint
    assert child.wait(timeout=10) == -signal.SIGKILL
    child.stdout.close()
    assert acknowledged == list(range(25))

    with SqliteJournal(path) as journal:
        (rec,) = journal.unfinished()
    persisted = [s.persist_id for s in rec.steps]
    assert len(persisted) >= 25
    assert persisted == [f"p{n}" for n in range(len(persisted))]  # a prefix, nothing lost or torn
    last_fw = max(n for n in range(len(persisted)) if n % 2 == 0)
    assert rec.last_steps["fw-b"].persist_id == f"p{last_fw}"


def test_concurrent_records_from_eight_threads_lose_nothing(tmp_path: Path) -> None:
    devices = tuple(f"dev-{i}" for i in range(8))
    per_thread = 40
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        begin(journal, devices=devices)
        start = threading.Barrier(len(devices))
        errors: list[BaseException] = []

        def worker(device: str) -> None:
            try:
                start.wait()
                for n in range(per_thread):
                    journal.record("m1", device, "edit", detail={"n": n})
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        rec = journal.get("m1")
    assert len(rec.steps) == len(devices) * per_thread
    assert len({s.seq for s in rec.steps}) == len(rec.steps)
    for device in devices:
        assert [s.detail for s in rec.steps if s.device == device] == [{"n": n} for n in range(per_thread)]


def test_history_is_newest_first_and_filters_by_vm(journal: SqliteJournal) -> None:
    for n in range(4):
        begin(journal, f"m{n}", vm_id="vm-7" if n % 2 == 0 else "vm-8")
        journal.finish(f"m{n}", "success", {})
    assert [r.migration_id for r in journal.history()] == ["m3", "m2", "m1", "m0"]
    assert [r.migration_id for r in journal.history(limit=2)] == ["m3", "m2"]
    assert [r.migration_id for r in journal.history(vm_id="vm-8")] == ["m3", "m1"]
    with pytest.raises(ValueError):
        journal.history(limit=0)


# --- recovery_decision: pure, built from records --------------------------------------------------------


def make(
    *steps: tuple[str, str, str | None, bool | None], devices: tuple[str, ...] = DEVICES
) -> MigrationRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return MigrationRecord(
        migration_id="m1",
        vm_id="vm-7",
        mode="centralized",
        source_host="a",
        destination_host="b",
        devices=devices,
        plan={},
        started_at=at,
        steps=tuple(
            StepRecord(seq=i, device=d, step=Step(s), at=at, persist_id=p, ok=ok)
            for i, (d, s, p, ok) in enumerate(steps)
        ),
    )


def committed_and_verified() -> list[tuple[str, str, str | None, bool | None]]:
    return [
        ("leaf-b1", "edit", None, None),
        ("fw-b", "edit", None, None),
        ("leaf-b1", "commit-confirmed", "p-leaf", None),
        ("fw-b", "commit-confirmed", "p-fw", None),
        ("leaf-b1", "verify", None, True),
        ("fw-b", "verify", None, True),
    ]


def test_recovery_confirms_once_the_first_confirm_was_recorded() -> None:
    decision = recovery_decision(make(*committed_and_verified(), ("leaf-b1", "confirm", None, None)))
    assert decision.complete and decision.consistent
    assert [(d.device, d.action, d.persist_id) for d in decision.devices] == [
        ("leaf-b1", RecoveryAction.CONFIRM, "p-leaf"),
        ("fw-b", RecoveryAction.CONFIRM, "p-fw"),
    ]


def test_recovery_does_not_repeat_a_confirm_recorded_as_done() -> None:
    decision = recovery_decision(
        make(
            *committed_and_verified(), ("leaf-b1", "confirm", None, None), ("leaf-b1", "confirm", None, True)
        )
    )
    assert decision.action("leaf-b1") is RecoveryAction.NOTHING
    assert decision.action("fw-b") is RecoveryAction.CONFIRM


def test_recovery_cancels_when_all_verified_but_no_confirm_recorded() -> None:
    decision = recovery_decision(make(*committed_and_verified()))
    assert not decision.complete
    assert decision.action("leaf-b1") is RecoveryAction.CANCEL
    assert decision.action("fw-b") is RecoveryAction.CANCEL
    assert {d.persist_id for d in decision.devices} == {"p-leaf", "p-fw"}


def test_recovery_cancels_committed_and_discards_edited_only() -> None:
    decision = recovery_decision(
        make(
            ("leaf-b1", "lock", None, None),
            ("fw-b", "lock", None, None),
            ("leaf-b1", "edit", None, None),
            ("fw-b", "edit", None, None),
            ("leaf-b1", "commit-confirmed", "p-leaf", None),
        )
    )
    assert not decision.complete
    assert decision.action("leaf-b1") is RecoveryAction.CANCEL
    assert decision.action("fw-b") is RecoveryAction.DISCARD


def test_recovery_rolls_back_when_a_cancel_came_before_any_confirm() -> None:
    decision = recovery_decision(
        make(*committed_and_verified(), ("fw-b", "cancel", None, None), ("fw-b", "cancel", None, True))
    )
    assert not decision.complete
    assert decision.action("leaf-b1") is RecoveryAction.CANCEL
    assert decision.action("fw-b") is RecoveryAction.NOTHING  # its cancel was recorded as done


def test_recovery_discards_edits_and_does_nothing_for_untouched_devices() -> None:
    decision = recovery_decision(make(("leaf-b1", "lock", None, None), ("leaf-b1", "edit", None, None)))
    assert decision.action("leaf-b1") is RecoveryAction.DISCARD
    assert decision.action("fw-b") is RecoveryAction.NOTHING
    done = recovery_decision(make(("leaf-b1", "edit", None, None), ("leaf-b1", "discard", None, True)))
    assert done.action("leaf-b1") is RecoveryAction.NOTHING
    assert recovery_decision(make()).devices[0].action is RecoveryAction.NOTHING


def test_recovery_ignores_a_commit_without_persist_id() -> None:
    decision = recovery_decision(make(("fw-b", "edit", None, None), ("fw-b", "commit-confirmed", None, None)))
    assert decision.action("fw-b") is RecoveryAction.NOTHING
    assert "session" in decision.devices[1].reason


def test_recovery_warns_about_an_unverified_device_past_the_point_of_no_return() -> None:
    steps = [s for s in committed_and_verified() if s[:2] != ("fw-b", "verify")]
    decision = recovery_decision(make(*steps, ("leaf-b1", "confirm", None, None)))
    assert decision.complete and not decision.consistent
    assert decision.action("fw-b") is RecoveryAction.CONFIRM  # completion is still the consistent choice
    assert any(w.startswith("fw-b: not verified") for w in decision.warnings)


def test_recovery_of_a_finished_migration_is_nothing(journal: SqliteJournal) -> None:
    begin(journal)
    journal.record("m1", "fw-b", "commit-confirmed", persist_id="p1")
    journal.finish("m1", "success", {})
    decision = recovery_decision(journal.get("m1"))
    assert {d.action for d in decision.devices} == {RecoveryAction.NOTHING}


def test_recovery_decision_from_a_journaled_migration(journal: SqliteJournal) -> None:
    begin(journal)
    journal.record("m1", "leaf-b1", "edit")
    journal.record("m1", "leaf-b1", "commit-confirmed", persist_id="p-leaf")
    journal.record("m1", "fw-b", "edit")
    (pending,) = journal.unfinished()
    decision = recovery_decision(pending)
    assert [(d.action, d.persist_id) for d in decision.devices] == [
        (RecoveryAction.CANCEL, "p-leaf"),
        (RecoveryAction.DISCARD, None),
    ]


def test_processes_opening_a_new_journal_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new journal to WAL takes a lock SQLite does not wait for: processes opening a fresh
    journal together (two `netmig migrate` runs at once) must all open it, none fail on 'database is
    locked'. Four processes open each of 20 fresh journals at the same moment (without the retry in
    SqliteJournal most rounds lose a process)."""
    code = ("import sys, time, pathlib\n"
            "from netmig.journal import SqliteJournal\n"
            "for p in sys.argv[1:]:\n"
            "    while not pathlib.Path(p + '.go').exists(): time.sleep(0.0005)\n"
            "    SqliteJournal(p).close()\n")
    paths = [str(tmp_path / f"j{i}" / "journal.sqlite") for i in range(20)]
    procs = [subprocess.Popen([sys.executable, "-c", code, *paths], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    time.sleep(1.5)
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path + ".go").touch()
        time.sleep(0.05)
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e.strip().splitlines()[-1:] for e in errors]
