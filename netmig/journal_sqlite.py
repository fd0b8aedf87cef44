"""The journal in one SQLite file: write-ahead, fsync'd, safe across threads and processes.

A step is recorded *before* it is taken, durably (WAL mode, ``synchronous=FULL``: ``record`` returns once
its SQLite transaction is committed and fsync'd), so a coordinator killed at any instant leaves a journal
that says which devices may hold a pending confirmed commit. Records that threads journal at the same
moment (the devices of one transaction) share one transaction and one fsync (group commit). Opening
retries briefly when another process is switching a new journal to WAL at the same time; every SQLite
error becomes a :class:`JournalError`. Values are stored as JSON, refused when a key looks like it names a
secret."""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netmig.journal_records import (
    JournalError,
    MigrationFinishedError,
    MigrationInProgressError,
    MigrationRecord,
    Step,
    StepRecord,
    UnknownMigrationError,
    group_vms,
)

__all__ = ["SCHEMA_VERSION", "SqliteJournal", "default_journal_path"]

# the journal's log lines keep the logger name they had before storage moved to its own module
log = logging.getLogger("netmig.journal")

SCHEMA_VERSION = 1
_SECRET_WORDS = ("password", "passwd", "secret", "passphrase", "privatekey")


def default_journal_path(env: Mapping[str, str] | None = None) -> Path:
    """``$NETMIG_HOME/journal.sqlite``; NETMIG_HOME defaults to ``~/.local/state/netmig``."""
    environ = os.environ if env is None else env
    home = environ.get("NETMIG_HOME") or str(Path("~/.local/state/netmig").expanduser())
    return Path(home) / "journal.sqlite"


def _check_no_secrets(value: object, where: str) -> None:
    """Raise ValueError if any mapping key, at any depth, looks like it names a secret."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            squashed = str(key).lower().replace("-", "").replace("_", "")
            if any(word in squashed for word in _SECRET_WORDS):
                raise ValueError(f"{where}: key {key!r} looks like a secret; secrets are never journaled")
            _check_no_secrets(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_no_secrets(item, f"{where}[{index}]")


def _to_json(value: Mapping[str, object] | None, where: str) -> str | None:
    if value is None:
        return None
    _check_no_secrets(value, where)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not representable as JSON: {exc}") from exc


def _from_json(text: str | None) -> Mapping[str, object] | None:
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise JournalError(f"journal holds a non-object JSON value: {text[:40]!r}")
    return value


@dataclass(slots=True)
class _Pending:
    """A step record queued for the journal's next group commit, and how writing it went."""

    migration_id: str
    device: str
    row: tuple[object, ...]
    done: bool = False
    error: Exception | None = None


def _when(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)


def _require_text(**values: str) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS migration (
    migration_id TEXT PRIMARY KEY,
    vm_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    source_host TEXT NOT NULL,
    destination_host TEXT NOT NULL,
    devices TEXT NOT NULL,
    plan TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    summary TEXT,
    recovered INTEGER NOT NULL DEFAULT 0,
    recovery_note TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_unfinished_per_vm ON migration(vm_id) WHERE finished_at IS NULL;
CREATE TABLE IF NOT EXISTS step (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id TEXT NOT NULL REFERENCES migration(migration_id),
    device TEXT NOT NULL,
    step TEXT NOT NULL,
    persist_id TEXT,
    detail TEXT,
    ok INTEGER,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS step_by_migration ON step(migration_id, seq);
"""

_MIGRATION_COLUMNS = (
    "migration_id, vm_id, mode, source_host, destination_host, devices, plan, started_at, "
    "finished_at, outcome, summary, recovered, recovery_note"
)


class SqliteJournal:
    """The journal in one SQLite file: WAL mode, ``synchronous=FULL``, a transaction per record (or per
    group of records written at the same moment).

    One connection guarded by a lock serves every thread; other processes may open the same file
    (SQLite's own locking and a unique index keep one unfinished migration per VM across them).
    """

    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []  # step records waiting for the next group commit (record())
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"journal {self.path}: cannot open: {exc}") from exc
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                self._setup()
                break
            except sqlite3.OperationalError as exc:
                # two processes opening a new journal at once: switching it to WAL takes an exclusive lock
                # that SQLite does not wait for (no busy handler there); the loser retries briefly
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                self._conn.close()
                raise JournalError(f"journal {self.path}: cannot initialise: {exc}") from exc
            except sqlite3.Error as exc:
                self._conn.close()
                raise JournalError(f"journal {self.path}: cannot initialise: {exc}") from exc
        log.debug("journal opened at %s", self.path)

    def _setup(self) -> None:
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"WAL mode refused (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than {SCHEMA_VERSION}")
        try:
            conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; the journal on disk is consistent whether or not this runs."""
        with self._lock:
            self._conn.close()

    def storage_settings(self) -> dict[str, object]:
        """The durability settings in effect on this connection (journal_mode, synchronous, ...)."""
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "user_version")
        with self._read() as conn:
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction; commits (and fsyncs) on success, rolls back otherwise."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: {exc}") from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise JournalError(f"journal {self.path}: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: {exc}") from exc

    def begin(
        self,
        migration_id: str,
        vm_id: str,
        mode: str,
        source_host: str,
        destination_host: str,
        devices: Sequence[str],
        plan: Mapping[str, object],
    ) -> None:
        """Journal a new migration before any device is touched.

        Raises:
            MigrationInProgressError: another unfinished migration of ``vm_id`` exists.
            ValueError: duplicate migration id, empty fields, or a plan key that looks like a secret.
        """
        _require_text(
            migration_id=migration_id,
            vm_id=vm_id,
            mode=mode,
            source_host=source_host,
            destination_host=destination_host,
        )
        names = list(devices)
        if not names or not all(isinstance(d, str) and d for d in names) or len(set(names)) != len(names):
            raise ValueError("devices must be a non-empty list of distinct names")
        plan_json = _to_json(plan, "plan")
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM migration WHERE migration_id=?", (migration_id,)).fetchone():
                raise ValueError(f"migration {migration_id}: id already journaled")
            busy = conn.execute(
                "SELECT migration_id FROM migration WHERE vm_id=? AND finished_at IS NULL", (vm_id,)
            ).fetchone()
            if busy:
                raise MigrationInProgressError(vm_id, busy[0])
            self._checkgroup_vms(conn, vm_id, plan)
            conn.execute(
                "INSERT INTO migration (migration_id, vm_id, mode, source_host, destination_host, devices, "
                "plan, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (migration_id, vm_id, mode, source_host, destination_host, json.dumps(names), plan_json,
                 time.time()),
            )
        log.info("journal: migration %s of VM %s begun (%s)", migration_id, vm_id, mode)

    @staticmethod
    def _checkgroup_vms(conn: sqlite3.Connection, vm_id: str, plan: Mapping[str, object]) -> None:
        """A batch group (its plan's ``group`` lists its VMs) holds each of its VMs as a single migration
        holds its one VM: refuse a migration or group of a VM an unfinished one holds."""
        wanted = set(group_vms(plan.get("group"))) or {vm_id}
        for mid, single, vms in conn.execute(
            "SELECT migration_id, vm_id, json_extract(plan, '$.group.vms') FROM migration "
            "WHERE finished_at IS NULL"
        ):
            held = set(group_vms({"vms": json.loads(vms)})) if vms else {single}
            clash = sorted(wanted & held)
            if clash:
                raise MigrationInProgressError(clash[0], mid)

    @staticmethod
    def _open_devices(conn: sqlite3.Connection, migration_id: str) -> list[str]:
        row = conn.execute(
            "SELECT devices, finished_at FROM migration WHERE migration_id=?", (migration_id,)
        ).fetchone()
        if row is None:
            raise UnknownMigrationError(migration_id)
        if row[1] is not None:
            raise MigrationFinishedError(migration_id)
        devices: list[str] = json.loads(row[0])
        return devices

    def record(
        self,
        migration_id: str,
        device: str,
        step: Step | str,
        *,
        persist_id: str | None = None,
        detail: Mapping[str, object] | None = None,
        ok: bool | None = None,
    ) -> None:
        """Durably record ``step`` on ``device``; call it *before* taking the step.

        ``ok`` stays None for that write-ahead record; pass True/False in a second record to journal a
        step's result where it matters (a verify's verdict, a failure for the history view).

        Raises:
            ValueError: unknown step, device not in the migration, or a detail key that looks like a secret.
        """
        try:
            kind = Step(step)
        except ValueError as exc:
            raise ValueError(f"unknown step {step!r}; one of {', '.join(Step)}") from exc
        entry = _Pending(migration_id, device, (migration_id, device, kind.value, persist_id,
                                                _to_json(detail, "detail"), None if ok is None else int(ok),
                                                time.time()))
        with self._queue_lock:
            self._queue.append(entry)
        with self._lock:
            if not entry.done:  # nobody wrote it while we waited: write every queued record, ours too
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._write_batch(batch)
        if entry.error is not None:
            raise entry.error
        log.debug("journal: %s %s %s", migration_id, device, kind.value)

    def _write_batch(self, batch: list[_Pending]) -> None:
        """Write queued step records in one transaction (one fsync); each record that cannot be written
        (unknown or finished migration, device not in it) gets its own error, the others are written.
        Called with ``self._lock`` held.

        Group commit: threads journaling steps of many devices at once (a batch group's transaction)
        wait for the lock together, and the first to get it writes what all of them queued."""
        conn = self._conn
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
                devices: dict[str, list[str]] = {}
                written: list[tuple[object, ...]] = []
                for entry in batch:
                    try:
                        if entry.migration_id not in devices:
                            devices[entry.migration_id] = self._open_devices(conn, entry.migration_id)
                    except (UnknownMigrationError, MigrationFinishedError) as exc:
                        entry.error = exc
                        continue
                    if entry.device not in devices[entry.migration_id]:
                        entry.error = ValueError(f"migration {entry.migration_id}: device {entry.device!r} "
                                                 "is not part of it")
                        continue
                    written.append(entry.row)
                conn.executemany(
                    "INSERT INTO step (migration_id, device, step, persist_id, detail, ok, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    written,
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                failure = JournalError(f"journal {self.path}: {exc}")
                for entry in batch:
                    entry.error = entry.error or failure
            except BaseException:
                self._rollback()
                for entry in batch:
                    entry.error = entry.error or JournalError(f"journal {self.path}: write interrupted")
                raise
        finally:
            for entry in batch:
                entry.done = True

    def _seal(self, migration_id: str, outcome: str, summary_json: str | None, note: str | None) -> None:
        with self._write() as conn:
            self._open_devices(conn, migration_id)
            conn.execute(
                "UPDATE migration SET finished_at=?, outcome=?, summary=?, recovered=?, recovery_note=? "
                "WHERE migration_id=?",
                (time.time(), outcome, summary_json, int(note is not None), note, migration_id),
            )

    def finish(self, migration_id: str, outcome: str, summary: Mapping[str, object]) -> None:
        """Seal a migration that ended by itself with ``outcome`` (e.g. "success", "rolled-back")."""
        _require_text(outcome=outcome)
        self._seal(migration_id, outcome, _to_json(summary, "summary"), None)
        log.info("journal: migration %s finished: %s", migration_id, outcome)

    def mark_recovered(self, migration_id: str, outcome: str, note: str) -> None:
        """Seal a migration that recovery completed or rolled back, with a note saying what it did."""
        _require_text(outcome=outcome, note=note)
        self._seal(migration_id, outcome, None, note)
        log.info("journal: migration %s recovered: %s", migration_id, outcome)

    @staticmethod
    def _load(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[MigrationRecord]:
        records = []
        for row in rows:
            mid, vm, mode, src, dst, devices, plan, started, finished, outcome, summary, recovered, note = row
            cursor = conn.execute(
                "SELECT seq, device, step, persist_id, detail, ok, at FROM step WHERE migration_id=? "
                "ORDER BY seq",
                (mid,),
            )
            steps = tuple(
                StepRecord(
                    seq=seq,
                    device=device,
                    step=Step(step),
                    at=datetime.fromtimestamp(at, UTC),
                    persist_id=persist_id,
                    detail=_from_json(detail),
                    ok=None if ok is None else bool(ok),
                )
                for seq, device, step, persist_id, detail, ok, at in cursor
            )
            records.append(
                MigrationRecord(
                    migration_id=mid,
                    vm_id=vm,
                    mode=mode,
                    source_host=src,
                    destination_host=dst,
                    devices=tuple(json.loads(devices)),
                    plan=_from_json(plan) or {},
                    started_at=datetime.fromtimestamp(started, UTC),
                    steps=steps,
                    finished_at=_when(finished),
                    outcome=outcome,
                    summary=_from_json(summary),
                    recovered=bool(recovered),
                    recovery_note=note,
                )
            )
        return records

    def get(self, migration_id: str) -> MigrationRecord:
        """The migration with all its steps. Raises UnknownMigrationError."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_MIGRATION_COLUMNS} FROM migration WHERE migration_id=?", (migration_id,)
            ).fetchall()
            if not rows:
                raise UnknownMigrationError(migration_id)
            return self._load(conn, rows)[0]

    def unfinished(self) -> list[MigrationRecord]:
        """Every migration neither finished nor recovered, oldest first: what recovery must look at."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_MIGRATION_COLUMNS} FROM migration WHERE finished_at IS NULL ORDER BY rowid"
            ).fetchall()
            return self._load(conn, rows)

    def history(self, limit: int = 50, vm_id: str | None = None) -> list[MigrationRecord]:
        """The most recent migrations, newest first, optionally of one VM."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where, args = ("WHERE vm_id=?", (vm_id,)) if vm_id is not None else ("", ())
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_MIGRATION_COLUMNS} FROM migration {where} ORDER BY rowid DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            return self._load(conn, rows)
