"""Append-only, crash-safe record of every migration step, and recovery of interrupted migrations.

A step is recorded *before* it is taken (write-ahead), durably (fsync'd; records written at the same
moment share one SQLite transaction), so a coordinator killed at any instant leaves a journal that says
which devices may hold a pending confirmed commit and under which persist-id.
:func:`netmig.recovery_rules.recovery_decision` turns that record into the per-device action the next
start takes. The storage sits behind the small :class:`Journal` protocol so a server database can replace
SQLite when several coordinators share one journal.

This module is the journal's public face; the code lives in two modules with one job each:

- :mod:`netmig.journal_records`: the step names, the records a journal hands back, the
  :class:`Journal` protocol and the journal's errors (pure data);
- :mod:`netmig.journal_sqlite`: :class:`SqliteJournal`, the SQLite storage (WAL, fsync, busy retry).
"""

from __future__ import annotations

from netmig.journal_records import (
    Journal,
    JournalError,
    MigrationFinishedError,
    MigrationInProgressError,
    MigrationRecord,
    Step,
    StepRecord,
    UnknownMigrationError,
)
from netmig.journal_sqlite import SCHEMA_VERSION as SCHEMA_VERSION  # importable here, as before
from netmig.journal_sqlite import SqliteJournal, default_journal_path

__all__ = [
    "Journal",
    "JournalError",
    "MigrationFinishedError",
    "MigrationInProgressError",
    "MigrationRecord",
    "SqliteJournal",
    "Step",
    "StepRecord",
    "UnknownMigrationError",
    "default_journal_path",
]
