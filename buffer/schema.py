"""Schema and migrations: versioned with ``PRAGMA user_version``, every upgrade in one transaction.

All steps from the version found to ``SCHEMA_VERSION`` run inside one ``BEGIN IMMEDIATE``
transaction together with the new ``user_version``: if any step fails, the database is not
touched. A database written by a newer punchgate is refused with ``SchemaTooNewError``.
Steps are never edited once released; add a new one instead.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable

import sqlite_utils

from config.errors import SchemaTooNewError

SCHEMA_VERSION = 5

# Versions 1 and 2 kept delivery state per row (the "delivery" column and partial indexes on
# it); version 3 keeps it as seq ranges (buffer/ledger.py). Steps are never edited.


def _v1(db: sqlite_utils.Database) -> None:
    """Punch rows, per-device state and the sequence counter."""
    db.table("punches").create(
        {
            "seq": int,  # INTEGER PRIMARY KEY: the rowid, assigned from counters.seq
            "id": str,
            "gateway_id": str,
            "device_id": str,
            "device_serial": str,
            "employee": str,
            "card": str,
            "device_time": str,  # naive ISO, as the terminal recorded it
            "time_utc": str,  # ISO with +00:00; NULL when the recorded time is impossible
            "utc_offset_minutes": int,
            "state": str,
            "state_code": int,
            "verify": str,
            "verify_code": int,
            "source": str,
            "kind": str,
            "void_of": str,
            "operator": str,
            "reason": str,
            "entered_at": str,
            "received_at": str,
            "delivery": str,
            "attempts": int,
            "last_error": str,
            "sent_at": str,
            "delivered_at": str,
            "suspect": str,  # comma-separated Suspect values, NULL when clean
            "raw": bytes,
        },
        pk="seq",
        not_null={"id", "gateway_id", "device_id", "source", "kind", "received_at", "delivery"},
        defaults={"delivery": "pending", "attempts": 0, "kind": "punch"},
    )
    db.table("punches").create_index(["id"], index_name="punches_id", unique=True)
    db.execute("CREATE INDEX punches_pending ON punches(seq) WHERE delivery = 'pending'")
    db.table("devices").create(
        {
            "device_id": str,
            "serial": str,
            "watermark": str,  # JSON, written in the same transaction as the punches it covers
            "last_seq": int,
            "last_punch_utc": str,
            "last_device_time": str,
            "updated_at": str,
        },
        pk="device_id",
    )
    db.table("counters").create({"name": str, "value": int}, pk="name", not_null={"value"})
    # The sequence lives in its own row so that deletes never let a number come back.
    db.execute("INSERT INTO counters(name, value) VALUES ('seq', 0)")


def _v2(db: sqlite_utils.Database) -> None:
    """O(1) stats counters, attempt bookkeeping, retention index and the recovery log."""
    db.table("punches").add_column("in_attempt", int, not_null_default=0)
    db.execute(
        "INSERT INTO counters(name, value) VALUES "
        "('pending', (SELECT count(*) FROM punches WHERE delivery = 'pending')), "
        "('delivered', (SELECT count(*) FROM punches WHERE delivery = 'delivered')), "
        "('last_delivered_seq', "
        "coalesce((SELECT max(seq) FROM punches WHERE delivery = 'delivered'), 0))"
    )
    db.execute(
        "CREATE INDEX punches_delivered_at ON punches(delivered_at) WHERE delivery = 'delivered'"
    )
    db.execute("CREATE INDEX punches_void_of ON punches(void_of) WHERE void_of IS NOT NULL")
    db.table("recoveries").create({"id": int, "at": str, "report": str}, pk="id")


def _v3(db: sqlite_utils.Database) -> None:
    """Delivery state as seq ranges; attempts count failures; the per-row state columns go."""
    db.execute(
        "CREATE TABLE delivered (lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL, at TEXT NOT NULL)"
    )
    # Runs of delivered rows with no pending row between them, split by UTC delivery day;
    # each range's time is its newest delivery (retention keeps a range until all of it is old).
    ranges: list[list[object]] = []
    previous_delivered = False
    rows = db.execute("SELECT seq, delivery, delivered_at FROM punches ORDER BY seq")
    for seq, state, at in rows:
        if state != "delivered":
            previous_delivered = False
            continue
        at = at or "1970-01-01T00:00:00.000000+00:00"
        last = ranges[-1] if ranges else None
        if previous_delivered and last is not None and str(last[2])[:10] == at[:10]:
            last[1] = seq
            last[2] = max(str(last[2]), at)
        else:
            ranges.append([seq, seq, at])
        previous_delivered = True
    db.conn.executemany("INSERT INTO delivered(lo, hi, at) VALUES (?, ?, ?)", ranges)
    # Rows ever offered to the broker were counted in "attempts" by v2; from now on attempts
    # count failures only, and "sent" (the highest seq offered) says what is replayed.
    db.execute(
        "INSERT INTO counters(name, value) VALUES ('sent', "
        "coalesce((SELECT max(seq) FROM punches WHERE sent_at IS NOT NULL), 0))"
    )
    db.execute("DROP INDEX punches_pending")
    db.execute("DROP INDEX punches_delivered_at")
    # In place: at 1,000,000 rows this step took 9.5 s and the file kept its size (a rebuild
    # with sqlite-utils' transform() took 10.7 s and grew the file by half).
    for column in ("delivery", "delivered_at", "sent_at", "in_attempt"):
        db.execute(f"ALTER TABLE punches DROP COLUMN {column}")


def _v4(db: sqlite_utils.Database) -> None:
    """``wall_ok``: 1 where the writer checked that device_time is time_utc plus the offset.

    The drain then writes the contract's local ``time`` without checking it again per row
    (buffer/payload_json.py); NULL (all older rows, salvaged and manual ones) means unchecked,
    and the drain checks. Adding a column with no default rewrites nothing: instant at any size.
    """
    db.execute("ALTER TABLE punches ADD COLUMN wall_ok INTEGER")


def _v5(db: sqlite_utils.Database) -> None:
    """``outbox_id``: a random number naming this outbox's ``seq`` numbering in the contract.

    A re-installed gateway, or one whose outbox was rebuilt empty, numbers from 1 again; the
    backend tells the two numberings apart by this id (a backup restored keeps it, and its
    numbering goes on). 63 bits: a positive SQLite integer, 16 hex digits in the contract.
    """
    db.execute("INSERT INTO counters(name, value) VALUES ('outbox_id', ?)", [secrets.randbits(63)])


MIGRATIONS: list[tuple[int, Callable[[sqlite_utils.Database], None]]] = [
    (1, _v1),
    (2, _v2),
    (3, _v3),
    (4, _v4),
    (5, _v5),
]


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file (0 for a new, empty database)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def too_new_message(found: int) -> str:
    """What to tell a technician holding a database from a newer punchgate."""
    return (
        f"the outbox has schema version {found} but this punchgate only knows up to "
        f"{SCHEMA_VERSION}: it was written by a newer punchgate. Upgrade punchgate "
        "(downgrading would lose punches); the file was not modified."
    )


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Upgrade to ``target`` in one transaction and return the version found before."""
    db = sqlite_utils.Database(conn)
    # Up to date (every open but the first after an upgrade): no write lock. Taking it each
    # time made every reading command (stats, status, list) fail to open while the daemon
    # held a write transaction longer than the busy timeout, though WAL readers never wait.
    found = user_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(too_new_message(found))
    if found >= target:
        return found
    # IMMEDIATE takes the write lock before reading user_version, so two processes opening a
    # new file at once cannot both run the steps: the second waits, then finds nothing to do.
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = user_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNewError(too_new_message(found))
        for version, step in MIGRATIONS:
            if found < version <= target:
                step(db)
        if found < target:
            conn.execute(f"PRAGMA user_version = {int(target)}")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found
