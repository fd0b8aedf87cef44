"""The DI transfer store of the middle mode: opaque blobs keyed by (migration, source device).

netmig never reads what a blob says; it keeps the bytes, their content type and digest, and hands them
back. :class:`TransferStore` is the small interface a server database can implement (several
coordinators sharing one store); :class:`SqliteStore` is the default: one file, durable (WAL, synchronous
FULL), safe across threads, so a coordinator restarted mid-migration finds the blobs it had collected.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from netmig.errors import NetmigError

__all__ = ["Blob", "SqliteStore", "StoreError", "TransferStore", "drop_at", "location_of"]


class StoreError(NetmigError):
    """The transfer store failed or holds a blob that does not match its digest."""


@dataclass(frozen=True, slots=True)
class Blob:
    """One exported DI blob: bytes, the exporter's content type and the SHA-256 of the bytes."""

    data: bytes
    content_type: str
    sha256: str
    entry_count: int = 0

    def verified(self) -> Blob:
        """This blob, after checking its digest (raises StoreError when it does not match)."""
        if hashlib.sha256(self.data).hexdigest() != self.sha256:
            raise StoreError(f"blob digest mismatch (content-type {self.content_type})")
        return self


class TransferStore(Protocol):
    """Where the middle mode keeps blobs between export and import."""

    def put(self, migration_id: str, device: str, blob: Blob) -> None: ...
    def get(self, migration_id: str, device: str) -> Blob | None: ...
    def devices(self, migration_id: str) -> list[str]: ...
    def drop(self, migration_id: str) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS di_blob (
    migration_id TEXT NOT NULL,
    device       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    entry_count  INTEGER NOT NULL,
    data         BLOB NOT NULL,
    stored_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (migration_id, device)
)
"""


class SqliteStore:
    """A :class:`TransferStore` in one SQLite file (``":memory:"`` for a throwaway store)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the transfer store: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, migration_id: str, device: str, blob: Blob) -> None:
        blob.verified()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO di_blob (migration_id, device, content_type, sha256, "
                    "entry_count, data) VALUES (?, ?, ?, ?, ?, ?)",
                    (migration_id, device, blob.content_type, blob.sha256, blob.entry_count, blob.data))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: storing {device}'s blob of {migration_id}: {exc}") from exc

    def get(self, migration_id: str, device: str) -> Blob | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data, content_type, sha256, entry_count FROM di_blob WHERE migration_id = ? "
                "AND device = ?", (migration_id, device)).fetchone()
        if row is None:
            return None
        return Blob(bytes(row[0]), str(row[1]), str(row[2]), int(row[3])).verified()

    def devices(self, migration_id: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT device FROM di_blob WHERE migration_id = ? ORDER BY device",
                                    (migration_id,)).fetchall()
        return [str(r[0]) for r in rows]

    def drop(self, migration_id: str) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM di_blob WHERE migration_id = ?", (migration_id,))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: dropping the blobs of {migration_id}: {exc}") from exc


def location_of(store: TransferStore) -> dict[str, str] | None:
    """Where ``store`` keeps its blobs, for a journal plan (recovery drops a settled migration's blobs
    there); None for a store another process cannot reopen (in memory, or not a :class:`SqliteStore`)."""
    if isinstance(store, SqliteStore) and store.path != ":memory:":
        return {"kind": "sqlite", "path": str(Path(store.path).resolve())}
    return None


def drop_at(location: object, migration_id: str) -> int:
    """Drop ``migration_id``'s blobs from the store journaled as ``location`` (:func:`location_of`);
    how many there were. A store file that no longer exists holds nothing (it is not created)."""
    if not isinstance(location, dict) or location.get("kind") != "sqlite" \
            or not isinstance(location.get("path"), str):
        raise StoreError(f"unknown transfer store location {location!r}")
    path = Path(location["path"])
    if not path.exists():
        return 0
    with SqliteStore(path) as store:
        held = len(store.devices(migration_id))
        store.drop(migration_id)
    return held
