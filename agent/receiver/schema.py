"""The receiver database's tables, and the migrations of older ones (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from typing import Any

import structlog

from agent.receiver.gaps import COPIES_CREATE
from agent.receiver.rows import COLUMNS

log = structlog.get_logger("receiver.schema")

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
# Finds a punch by its number (the copies' check, gaps.py); the numbering is filtered after.
PUNCHES_INDEX = "CREATE INDEX IF NOT EXISTS punches_gateway_seq ON punches(gateway_id, seq)"


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
    ("punches_gateway_seq", PUNCHES_INDEX),
    ("seq_copies", COPIES_CREATE),
)


def create_missing(cur: Any) -> None:
    """Create the tables and index that do not exist yet (in the connection's search path)."""
    cur.execute(
        "SELECT " + ", ".join("to_regclass(%s) IS NULL" for _ in _SCHEMA_OBJECTS),
        [name for name, _ in _SCHEMA_OBJECTS],
    )
    missing = cur.fetchone()
    for (_, create), absent in zip(_SCHEMA_OBJECTS, missing, strict=True):
        if absent:
            cur.execute(create)  # constants only


def widen_integers(cur: Any) -> None:
    """``ALTER`` the narrow integer columns of an older table to BIGINT (one statement)."""
    cur.execute(_NARROW_COLUMNS_SQL, (list(_BIGINT_COLUMNS),))
    narrow = [row[0] for row in cur.fetchall()]
    if narrow:
        changes = ", ".join(f"ALTER COLUMN {name} TYPE BIGINT" for name in narrow)
        cur.execute(f"ALTER TABLE punches {changes}")  # names from COLUMNS only
        log.info("receiver_columns_widened", columns=narrow)


# What a failed migration's error starts with (the database's own reason follows).
MIGRATION_FAILED = (
    "cannot bring the receiver database up to date (seqs tracked per gateway and outbox_id; "
    "nothing was changed: run the receiver once as the tables' owner, after fixing the reason)"
)

# Receiver databases made before numberings were told apart (schema v5's outbox_id) have no
# ``outbox_id`` in ``punches`` and key ``seq_copies`` by (gateway_id, seq). Every row they hold
# is kept as it is: their numbers count in the gateway's numbering with no outbox_id, as they
# were counted before. One transaction: a power cut leaves the old schema or the new one.
_COPIES_MIGRATING = "seq_copies_migrating"
_SQLITE_COPIES_REBUILD = (
    COPIES_CREATE.replace("IF NOT EXISTS seq_copies", _COPIES_MIGRATING),
    f"INSERT INTO {_COPIES_MIGRATING} (gateway_id, outbox_id, seq, id)"  # noqa: S608
    " SELECT gateway_id, '', seq, id FROM seq_copies",
    "DROP TABLE seq_copies",
    f"ALTER TABLE {_COPIES_MIGRATING} RENAME TO seq_copies",
)


def _sqlite_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}  # constant names


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Create the tables, or bring older ones up to date, in one transaction (run it at will)."""
    conn.execute("BEGIN IMMEDIATE")  # two receivers opening one file: one migrates, one sees it
    try:
        conn.execute(SQLITE_CREATE)
        conn.execute(PUNCHES_INDEX)
        conn.execute(COPIES_CREATE)
        migrated = []
        if "outbox_id" not in _sqlite_columns(conn, "punches"):
            conn.execute("ALTER TABLE punches ADD COLUMN outbox_id TEXT")
            migrated.append("punches")
        if "outbox_id" not in _sqlite_columns(conn, "seq_copies"):
            for statement in _SQLITE_COPIES_REBUILD:
                conn.execute(statement)
            migrated.append("seq_copies")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite rolls back by itself on some errors (disk full)
            conn.execute("ROLLBACK")
        raise
    if migrated:
        log.info("receiver_database_migrated", tables=migrated, added="outbox_id")


# pg_attribute, not information_schema: a role sees the catalogue whatever its privileges.
_PG_HAS_OUTBOX_ID = (
    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s)"
    " AND attname = 'outbox_id' AND NOT attisdropped)"
)
_PG_COPIES_KEY = (
    "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'"
)


def _pg_missing_outbox_id(cur: Any) -> list[str]:
    """The tables (``punches``, ``seq_copies``) that have no ``outbox_id`` column yet."""
    missing = []
    for table in ("punches", "seq_copies"):
        cur.execute(_PG_HAS_OUTBOX_ID, (table,))
        if not cur.fetchone()[0]:
            missing.append(table)
    return missing


def migrate_postgres(cur: Any) -> None:
    """Bring tables made before ``outbox_id`` up to date, in the caller's transaction.

    Looks first, and alters only what is missing: a role allowed only to read and insert opens
    a migrated database. The tables are locked before looking again, so that two receivers
    starting together migrate once (the second waits, then finds nothing to do).
    """
    if not _pg_missing_outbox_id(cur):
        return
    cur.execute("LOCK TABLE punches, seq_copies IN ACCESS EXCLUSIVE MODE")
    missing = _pg_missing_outbox_id(cur)
    if "punches" in missing:
        cur.execute("ALTER TABLE punches ADD COLUMN outbox_id TEXT")
    if "seq_copies" in missing:
        cur.execute(_PG_COPIES_KEY, ("seq_copies",))
        keys = [row[0] for row in cur.fetchall()]
        cur.execute("ALTER TABLE seq_copies ADD COLUMN outbox_id TEXT NOT NULL DEFAULT ''")
        for key in keys:  # a name from the catalogue (a DBA may have chosen it), quoted
            quoted = '"' + key.replace('"', '""') + '"'
            cur.execute(f"ALTER TABLE seq_copies DROP CONSTRAINT {quoted}")
        cur.execute("ALTER TABLE seq_copies ADD PRIMARY KEY (gateway_id, outbox_id, seq)")
    if missing:
        log.info("receiver_database_migrated", tables=missing, added="outbox_id")
