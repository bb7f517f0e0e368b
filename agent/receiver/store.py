"""The receiver's punch store: idempotent inserts by punch id, and sequence-gap reports.

This is the one place outside ``buffer/`` that writes SQL, on purpose: it is not the agent's
outbox but a stand-in for the HR backend's own database (a separate file or PostgreSQL server,
owned by the backend side), kept here as the backend team's worked example.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

from agent.receiver.dburl import redact_url
from agent.receiver.errors import UNSTORABLE_VALUES, StoreError, UnstorablePunches
from agent.receiver.gaps import (
    SQLITE_COPIES,
    Gap,
    GatewaySummary,
    gaps_of,
    gaps_sql,
    summary_of,
    summary_sql,
)
from agent.receiver.pgstore import PostgresStore
from agent.receiver.rows import (
    COLUMNS,
    FULL_STATEMENTS,
    ORDINARY_STATEMENTS,
    PG_INSERT,
    ROWS_PER_INSERT,
    SQLITE_INSERT,
    _row_of_partial,
    copy_of,
    now_text,
    row_of,
    rows_of,
    split_ordinary,
    sqlite_insert,
)
from agent.receiver.schema import MIGRATION_FAILED, PG_CREATE, SQLITE_CREATE, migrate_sqlite
from config.errors import ConfigError

# Callers import these from here (the module they lived in before the split).
__all__ = [
    "COLUMNS",
    "PG_CREATE",
    "PG_INSERT",
    "SQLITE_CREATE",
    "SQLITE_INSERT",
    "PostgresStore",
    "PunchStore",
    "SqliteStore",
    "StoreError",
    "UnstorablePunches",
    "_row_of_partial",
    "now_text",
    "open_store",
    "row_of",
    "rows_of",
    "split_ordinary",
    "sqlite_insert",
]

# sqlite3's errors about the values rather than the database (a value of a type it cannot
# bind, a constraint); anything else (locked, I/O, disk full) is the database's own trouble.
_SQLITE_VALUE_ERRORS = (
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    *UNSTORABLE_VALUES,
)


class PunchStore(Protocol):
    """The small interface both stores (SQLite, PostgreSQL) implement."""

    def store(self, punches: Sequence[dict[str, Any]]) -> int:
        """Insert punches not stored yet (by id) in one committed transaction; return how many."""

    def gaps(self, gateway_id: str | None = None) -> list[Gap]:
        """Missing sequence ranges per gateway and numbering (``outbox_id``)."""

    def summary(self) -> list[GatewaySummary]:
        """Counts and seq ranges per gateway and numbering (``outbox_id``)."""

    def count(self) -> int:
        """Punches stored."""

    def close(self) -> None:
        """Release the connection."""


def _create_private(path: Path) -> None:
    """Create ``path`` readable by owner and group only (0640, as the gateway's outbox): it holds
    every employee's punches, and SQLite gives the -wal and -shm files the same mode. An
    existing file keeps its mode."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
    except FileExistsError:
        return
    os.close(fd)


class SqliteStore:
    """Punches in a SQLite file: WAL, ``synchronous=FULL`` (an ack promises durability)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # One connection shared by the receiver thread and callers (CLI reports): serialise,
        # and never let close() pull the connection from under a running statement.
        self._lock = threading.Lock()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=10000")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the receiver database {path}: {exc}; the user running the "
                "receiver must be able to write it, its -wal and -shm files and its directory"
            ) from exc
        try:
            migrate_sqlite(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"{MIGRATION_FAILED}: {path}: {exc}") from exc

    def store(self, punches: Sequence[dict[str, Any]]) -> int:
        stored_at = now_text()
        rows = rows_of(punches, stored_at)
        with self._lock:
            self._check_open()
            return self._store_rows(rows)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the receiver database {self.path} is closed")

    def _store_rows(self, rows: list[tuple[Any, ...]]) -> int:
        try:
            ordinary, full = split_ordinary(rows)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._insert_rows(ordinary, ORDINARY_STATEMENTS)
                self._insert_rows(full, FULL_STATEMENTS)
                inserted = self._conn.total_changes - before
                if inserted < len(rows):  # copies: their numbers are no gap (gaps.py)
                    self._conn.executemany(SQLITE_COPIES, [copy_of(r) for r in rows])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except _SQLITE_VALUE_ERRORS as exc:
            raise UnstorablePunches(f"cannot store punches in {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store punches in {self.path}: {exc}") from exc
        return inserted

    def _insert_rows(self, rows: list[Any], statements: tuple[str, str]) -> None:
        many, one = statements
        step = ROWS_PER_INSERT
        whole = len(rows) - len(rows) % step
        for start in range(0, whole, step):
            self._conn.execute(many, tuple(chain.from_iterable(rows[start : start + step])))
        if whole < len(rows):
            self._conn.executemany(one, rows[whole:])

    def _where(self, gateway_id: str | None) -> tuple[str, tuple[Any, ...]]:
        return ("WHERE gateway_id = ?", (gateway_id,)) if gateway_id else ("", ())

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the receiver database {self.path}: {exc}") from exc

    def gaps(self, gateway_id: str | None = None) -> list[Gap]:
        where, params = self._where(gateway_id)
        return gaps_of(self._read(gaps_sql(where), params * 2))

    def summary(self) -> list[GatewaySummary]:
        return summary_of(self._read(summary_sql()), self.gaps())

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM punches")[0][0])

    def ids(self) -> list[str]:
        """Every stored id (tests and small tools)."""
        return [r[0] for r in self._read("SELECT id FROM punches ORDER BY gateway_id, seq")]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def open_store(db: str) -> SqliteStore | PostgresStore:
    """A store for ``db``: ``postgresql://...`` (or ``postgres://``), else a SQLite file path."""
    if not db.strip():  # "$HR_DB" unset: '' opened "." and failed obscurely
        raise ConfigError("--db is empty: give a SQLite file path or a postgresql:// URL")
    if db != db.strip():  # "  " made a database file named two spaces
        shown = redact_url(db)
        raise ConfigError(f"--db {shown!r} has spaces or line breaks around it: remove them")
    if db.startswith(("postgresql://", "postgres://")):
        return PostgresStore(db)
    path = db.removeprefix("sqlite:///") if db.startswith("sqlite:///") else db
    if "://" in path:
        raise ConfigError(f"--db {redact_url(db)!r}: give a file path or a postgresql:// URL")
    return SqliteStore(Path(path))
