"""The receiver's punch store: idempotent inserts by punch id, and sequence-gap reports.

This is the one place outside ``buffer/`` that writes SQL, on purpose: it is not the agent's
outbox but a stand-in for the HR backend's own database (a separate file or PostgreSQL server,
owned by the backend side), kept here as the backend team's worked example.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

import structlog

from agent.receiver.dburl import redact_url, scrub
from agent.receiver.gaps import (
    COPIES_CREATE,
    PG_COPIES,
    SQLITE_COPIES,
    Gap,
    GatewaySummary,
    gaps_of,
    gaps_sql,
    summary_of,
    summary_sql,
)
from agent.receiver.pgdeadline import Deadline, cut
from config.errors import ConfigError, PunchgateError

log = structlog.get_logger("receiver.store")

# Every field of the contract's punch object, in this order; "suspect" as comma-separated text.
# Integer fields are BIGINT in PostgreSQL: it takes every value SQLite's 64-bit INTEGER takes
# (the contract bounds neither seq nor the codes, and a serial clock may print any state code).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("gateway_id", "text"),
    ("seq", "bigint"),
    ("site", "text"),
    ("device_id", "text"),
    ("device_serial", "text"),
    ("employee", "text"),
    ("card", "text"),
    ("device_time", "text"),
    ("time", "text"),
    ("time_utc", "text"),
    ("utc_offset_minutes", "bigint"),
    ("state", "text"),
    ("state_code", "bigint"),
    ("verify", "text"),
    ("verify_code", "bigint"),
    ("source", "text"),
    ("kind", "text"),
    ("void_of", "text"),
    ("operator", "text"),
    ("reason", "text"),
    ("entered_at", "text"),
    ("received_at", "text"),
    ("suspect", "text"),
    ("raw", "text"),
    ("replayed", "int"),
    ("stored_at", "text"),
)
_PG_TYPES = {"text": "TEXT", "int": "INTEGER", "bigint": "BIGINT"}
_SQLITE_TYPES = {"text": "TEXT", "int": "INTEGER", "bigint": "INTEGER"}


def _create_table(types: dict[str, str]) -> str:
    columns = ", ".join(
        f"{name} {types[kind]}"
        + (" PRIMARY KEY" if name == "id" else "")
        + (" NOT NULL" if name in ("gateway_id", "seq", "replayed", "stored_at") else "")
        for name, kind in COLUMNS
    )
    return f"CREATE TABLE IF NOT EXISTS punches ({columns})"


SQLITE_CREATE = _create_table(_SQLITE_TYPES)
PG_CREATE = _create_table(_PG_TYPES)
_NAMES = ", ".join(name for name, _ in COLUMNS)
# Built from the constant COLUMNS only; every value is a bound parameter. Up to 50 rows per
# statement (multi-row VALUES): one statement step per 50 punches instead of one per punch.
_ROWS_PER_INSERT = 50
# Fields a terminal's ordinary punch leaves null. Binding None costs Python's sqlite3 a failed
# adaptation, ≈ 0.5 µs a value (7 a row: a third of the insert), so rows where all of these are
# null use a statement that writes them as NULL literals and binds only the other values.
_USUALLY_NULL = ("card", "void_of", "operator", "reason", "entered_at", "suspect", "raw")


def sqlite_insert(rows: int, nulls: tuple[str, ...] = ()) -> str:
    """The insert of ``rows`` punches (duplicates ignored by id); ``nulls`` are NULL literals."""
    marks = "(" + ", ".join("NULL" if name in nulls else "?" for name, _ in COLUMNS) + ")"
    return (
        f"INSERT OR IGNORE INTO punches ({_NAMES}) VALUES "  # noqa: S608
        + ", ".join([marks] * rows)
    )


SQLITE_INSERT = sqlite_insert(1)
_COLUMN_INDEX = {name: n for n, (name, _) in enumerate(COLUMNS)}
_null_part = operator.itemgetter(*(_COLUMN_INDEX[name] for name in _USUALLY_NULL))
_bound_part = operator.itemgetter(
    *(n for n, (name, _) in enumerate(COLUMNS) if name not in _USUALLY_NULL)
)
_ALL_NULL = (None,) * len(_USUALLY_NULL)
# (statement for _ROWS_PER_INSERT rows, for one row) of full rows, then of ordinary ones.
_FULL_STATEMENTS = (sqlite_insert(_ROWS_PER_INSERT), SQLITE_INSERT)
_ORDINARY_STATEMENTS = (
    sqlite_insert(_ROWS_PER_INSERT, _USUALLY_NULL),
    sqlite_insert(1, _USUALLY_NULL),
)


def split_ordinary(rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """(bound values of the rows whose ``_USUALLY_NULL`` fields are all null, the other rows)."""
    ordinary, full = [], []
    for row in rows:
        if _null_part(row) == _ALL_NULL:  # a tuple compare in C; None == None only for None
            ordinary.append(_bound_part(row))
        else:
            full.append(row)
    return ordinary, full


# Arrays unnested server-side: one statement per batch, and rowcount counts inserted rows only.
PG_INSERT = (
    "INSERT INTO punches ("  # noqa: S608
    + _NAMES
    + ") SELECT * FROM unnest("
    + ", ".join(f"%s::{kind}[]" for _, kind in COLUMNS)
    + ") ON CONFLICT (id) DO NOTHING"
)


class StoreError(PunchgateError):
    """The receiver's database cannot be used; the message says which and why."""

    exit_code = 5


class UnstorablePunches(StoreError):
    """The database works but refuses these punches' values: storing them again cannot help."""


# What the drivers raise, outside their own Error classes, for values valid in JSON that the
# database cannot hold: an integer beyond 64 bits (sqlite3), a lone surrogate (both drivers).
_UNSTORABLE = (OverflowError, UnicodeEncodeError)
# sqlite3's errors about the values rather than the database (a value of a type it cannot
# bind, a constraint); anything else (locked, I/O, disk full) is the database's own trouble.
_SQLITE_VALUE_ERRORS = (
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    *_UNSTORABLE,
)


class PunchStore(Protocol):
    """The small interface both stores (SQLite, PostgreSQL) implement."""

    def store(self, punches: Sequence[dict[str, Any]]) -> int:
        """Insert punches not stored yet (by id) in one committed transaction; return how many."""

    def gaps(self, gateway_id: str | None = None) -> list[Gap]:
        """Missing sequence ranges per gateway."""

    def summary(self) -> list[GatewaySummary]:
        """Counts and seq ranges per gateway."""

    def count(self) -> int:
        """Punches stored."""

    def close(self) -> None:
        """Release the connection."""


_FIELDS = tuple(name for name, _ in COLUMNS[:-1])  # all but stored_at, in COLUMNS order
_take_fields = operator.itemgetter(*_FIELDS)
_SUSPECT = _FIELDS.index("suspect")
_REPLAYED = _FIELDS.index("replayed")


def row_of(punch: dict[str, Any], stored_at: str) -> tuple[Any, ...]:
    """The columns of one punch, in ``COLUMNS`` order."""
    try:
        # The contract's punch has every field: one C-level lookup of all of them.
        row = _take_fields(punch)
    except KeyError:
        return _row_of_partial(punch, stored_at)
    suspect, replayed = row[_SUSPECT], row[_REPLAYED]
    if type(suspect) is list and not suspect and type(replayed) is bool:
        # The usual punch: no suspect flags.
        fixed = list(row)
        fixed[_SUSPECT], fixed[_REPLAYED] = None, int(replayed)
        return (*fixed, stored_at)
    return _row_of_partial(punch, stored_at)


def rows_of(punches: Sequence[dict[str, Any]], stored_at: str) -> list[tuple[Any, ...]]:
    """The rows of ``punches``; ``UnstorablePunches`` if a field has a type no column takes.

    (``"suspect": [1]``: a TypeError here failed every punch stored with it, of every gateway.)
    """
    try:
        return [row_of(p, stored_at) for p in punches]
    except TypeError as exc:
        raise UnstorablePunches(f"cannot store punches: a field has the wrong type: {exc}") from exc


def _row_of_partial(punch: dict[str, Any], stored_at: str) -> tuple[Any, ...]:
    get = punch.get
    suspect = get("suspect")
    return (
        punch["id"],
        punch["gateway_id"],
        punch["seq"],
        get("site"),
        get("device_id"),
        get("device_serial"),
        get("employee"),
        get("card"),
        get("device_time"),
        get("time"),
        get("time_utc"),
        get("utc_offset_minutes"),
        get("state"),
        get("state_code"),
        get("verify"),
        get("verify_code"),
        get("source"),
        get("kind"),
        get("void_of"),
        get("operator"),
        get("reason"),
        get("entered_at"),
        get("received_at"),
        ",".join(suspect) if isinstance(suspect, list) and suspect else None,
        get("raw"),
        1 if get("replayed") else 0,
        stored_at,
    )


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
            self._conn.execute(SQLITE_CREATE)
            self._conn.execute(
                "CREATE INDEX IF NOT EXISTS punches_gateway_seq ON punches(gateway_id, seq)"
            )
            self._conn.execute(COPIES_CREATE)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the receiver database {path}: {exc}; the user running the "
                "receiver must be able to write it, its -wal and -shm files and its directory"
            ) from exc

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
                self._insert_rows(ordinary, _ORDINARY_STATEMENTS)
                self._insert_rows(full, _FULL_STATEMENTS)
                inserted = self._conn.total_changes - before
                if inserted < len(rows):  # copies: their numbers are no gap (gaps.py)
                    self._conn.executemany(
                        SQLITE_COPIES, [(r[1], r[2], r[0], r[1], r[2]) for r in rows]
                    )
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
        step = _ROWS_PER_INSERT
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
        return gaps_of(self._read(gaps_sql(where), params * 4))

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


# Tables made before the integer columns were BIGINT (see COLUMNS) are widened when opened:
# every 32-bit value fits, and the ALTER runs once (the catalogue then says bigint).
_BIGINT_COLUMNS = tuple(name for name, kind in COLUMNS if kind == "bigint")
_NARROW_COLUMNS_SQL = (
    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND table_name = 'punches' AND data_type IN ('integer', 'smallint')"
    " AND column_name = ANY(%s) ORDER BY column_name"
)


# Each object, and how to make it. CREATE ... IF NOT EXISTS needs the CREATE privilege even
# when the object exists: a role the DBA allowed only to read and insert could not even open
# the database (nor an analyst's --gaps), so only what is missing is created.
_SCHEMA_OBJECTS = (
    ("punches", PG_CREATE),
    (
        "punches_gateway_seq",
        "CREATE INDEX IF NOT EXISTS punches_gateway_seq ON punches(gateway_id, seq)",
    ),
    ("seq_copies", COPIES_CREATE),
)


def _create_missing(cur: Any) -> None:
    """Create the tables and index that do not exist yet (in the connection's search path)."""
    cur.execute(
        "SELECT " + ", ".join("to_regclass(%s) IS NULL" for _ in _SCHEMA_OBJECTS),
        [name for name, _ in _SCHEMA_OBJECTS],
    )
    missing = cur.fetchone()
    for (_, create), absent in zip(_SCHEMA_OBJECTS, missing, strict=True):
        if absent:
            cur.execute(create)  # constants only


def _widen_integers(cur: Any) -> None:
    """``ALTER`` the narrow integer columns of an older table to BIGINT (one statement)."""
    cur.execute(_NARROW_COLUMNS_SQL, (list(_BIGINT_COLUMNS),))
    narrow = [row[0] for row in cur.fetchall()]
    if narrow:
        changes = ", ".join(f"ALTER COLUMN {name} TYPE BIGINT" for name in narrow)
        cur.execute(f"ALTER TABLE punches {changes}")  # names from COLUMNS only
        log.info("receiver_columns_widened", columns=narrow)


class PostgresStore:
    """Punches in PostgreSQL through psycopg 3 (the optional ``receiver-pg`` extra)."""

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 10.0,
        answer_timeout: float = 30.0,
        connect_timeout: int = 10,
    ) -> None:
        try:
            import psycopg  # optional dependency, only for postgresql:// URLs
        except ImportError as exc:
            raise ConfigError(
                "a postgresql:// database needs psycopg: pip install 'punchgate[receiver-pg]'"
            ) from exc
        self._psycopg = psycopg
        self._url = url
        # Like SQLite's busy timeout: an insert waiting on another session's lock fails after
        # this long (logged, the batch held and tried again) instead of waiting unseen forever.
        self._lock_timeout_ms = max(1, int(lock_timeout * 1000))
        # Seconds a statement may wait for the server's answer before its connection is cut:
        # a server that never answers otherwise held the receiver forever (pgdeadline.py).
        self._answer_timeout = answer_timeout
        self._connect_timeout = connect_timeout  # seconds; libpq takes whole seconds, 2 or more
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._conn = self._connect()
        except psycopg.errors.ConnectionTimeout:
            raise self._unanswered("cannot open the receiver database") from None
        except psycopg.Error as exc:
            raise self._error("cannot open the receiver database", exc) from self._cause(exc)
        deadline = Deadline(self._conn, answer_timeout)
        try:
            with deadline, self._conn.cursor() as cur:
                _create_missing(cur)
                _widen_integers(cur)
                self._conn.commit()
        except psycopg.Error as exc:
            self._conn.close()
            if deadline.fired:
                raise self._silent("cannot open the receiver database") from None
            raise self._error("cannot open the receiver database", exc) from self._cause(exc)
        self._insert = PG_INSERT  # the whole batch in one statement; rowcount = inserted

    def _error(self, what: str, exc: Exception) -> StoreError:
        """``what: exc`` without the URL's password: libpq quotes URLs it cannot parse."""
        return StoreError(f"{what}: {scrub(str(exc), self._url)}")

    def _cause(self, exc: Exception) -> Exception | None:
        """``exc`` to chain, or None when its text holds the password (--debug prints it)."""
        return None if scrub(str(exc), self._url) != str(exc) else exc

    def _silent(self, what: str) -> StoreError:
        """The error for a statement the server did not answer within the deadline."""
        return StoreError(
            f"{what}: PostgreSQL did not answer within {self._answer_timeout:g}s (the "
            "connection is open but nothing comes back): check the database server (load, "
            "disk, locks) and the network path to it; the punches stay unacknowledged and are "
            "stored at the next try"
        )

    def _unanswered(self, what: str) -> StoreError:
        """The error for a server that did not complete the connection in time."""
        return StoreError(
            f"{what}: {redact_url(self._url)} did not complete the connection within "
            f"{self._connect_timeout}s: check that the server is up and not overloaded, and the "
            "host, port and firewall in between (a proxy may accept and never answer)"
        )

    def _connect(self) -> Any:
        conn = self._psycopg.connect(
            self._url, autocommit=False, connect_timeout=self._connect_timeout
        )
        with Deadline(conn, self._answer_timeout) as deadline:
            try:
                conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")  # an int: no injection
                conn.commit()
            except self._psycopg.Error:
                if deadline.fired:
                    conn.close()
                    raise self._silent("cannot set up the PostgreSQL session") from None
                raise
        return conn

    def _live(self) -> Any:
        """The connection, made again if the server ended it (a restart, a failover, an idle
        connection reaper): psycopg never reconnects by itself, and without this every later
        batch failed until the receiver was restarted. Called with the lock held."""
        if self._closed:
            raise StoreError("the receiver database (PostgreSQL) is closed")
        if self._conn.closed:
            try:
                self._conn = self._connect()
            except self._psycopg.errors.ConnectionTimeout:
                raise self._unanswered("cannot reconnect to PostgreSQL") from None
            except self._psycopg.Error as exc:
                raise self._error("cannot reconnect to PostgreSQL", exc) from self._cause(exc)
            log.info("receiver_database_reconnected")
        return self._conn

    def _rollback(self) -> None:
        """Roll back after a failed statement; on a lost connection there is nothing to undo."""
        if not self._conn.closed:
            try:
                self._conn.rollback()
            except self._psycopg.Error:
                pass  # the connection broke under us: the next call makes a new one

    def store(self, punches: Sequence[dict[str, Any]]) -> int:
        stored_at = now_text()
        rows = rows_of(punches, stored_at)
        if not rows:
            return 0
        columns = [list(column) for column in zip(*rows, strict=True)]
        with self._lock:
            return self._insert_columns(columns)

    def _insert_columns(self, columns: list[list[Any]]) -> int:
        conn = self._live()
        deadline = Deadline(conn, self._answer_timeout)
        try:
            with deadline, conn.cursor() as cur:
                cur.execute(self._insert, columns)
                inserted = cur.rowcount
                if inserted < len(columns[0]):  # copies: their numbers are no gap (gaps.py)
                    cur.execute(PG_COPIES, (columns[1], columns[2], columns[0]))
                conn.commit()
        except (self._psycopg.Error, *_UNSTORABLE) as exc:
            self._rollback()
            if deadline.fired:
                raise self._silent("cannot store punches in PostgreSQL") from exc
            message = f"cannot store punches in PostgreSQL: {exc}"
            # Data (class 22: e.g. a NUL in a text), integrity and adaptation errors are about
            # the values; connection and server trouble (OperationalError, ...) are not, except
            # a program limit (54000: a value too large for its index entry), which a punch's
            # text causes and which storing it again cannot help.
            values = (
                self._psycopg.DataError,
                self._psycopg.IntegrityError,
                self._psycopg.ProgrammingError,
                self._psycopg.errors.ProgramLimitExceeded,
                *_UNSTORABLE,
            )
            if isinstance(exc, values):
                raise UnstorablePunches(message) from exc
            raise StoreError(message) from exc
        return inserted

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._live()
            deadline = Deadline(conn, self._answer_timeout)
            try:
                with deadline, conn.cursor() as cur:
                    cur.execute(sql, params)
                    rows = cur.fetchall()
                    conn.commit()
            except self._psycopg.Error as exc:
                self._rollback()
                if deadline.fired:
                    raise self._silent("cannot read from PostgreSQL") from exc
                raise StoreError(f"cannot read from PostgreSQL: {exc}") from exc
        return rows

    def gaps(self, gateway_id: str | None = None) -> list[Gap]:
        where, params = ("WHERE gateway_id = %s", (gateway_id,)) if gateway_id else ("", ())
        return gaps_of(self._query(gaps_sql(where), params * 4))

    def summary(self) -> list[GatewaySummary]:
        return summary_of(self._query(summary_sql(), ()), self.gaps())

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM punches", ())[0][0])

    def ids(self) -> list[str]:
        return [r[0] for r in self._query("SELECT id FROM punches ORDER BY gateway_id, seq", ())]

    def close(self) -> None:
        # Cancel a statement in progress first: waiting on the lock while it waits on the
        # server (a table lock) kept a stopping receiver from ever exiting. A server that does
        # not answer the cancel request either gets its connection cut.
        self._closed = True
        if not self._lock.acquire(blocking=False):
            try:
                self._conn.cancel_safe(timeout=1.0)
            except self._psycopg.Error:
                pass  # nothing running, or the connection is gone or silent: cut below
            if not self._lock.acquire(timeout=1.0):
                cut(self._conn)
                if not self._lock.acquire(timeout=5.0):
                    log.warning("receiver_database_not_closed", reason="a statement still waits")
                    return
        try:
            self._conn.close()
        finally:
            self._lock.release()


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
