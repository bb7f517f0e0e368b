"""Integrity checks: SQLite's own checks, our counters, and a WAL cut shorter than its index."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from buffer.database import file_size, shm_path, wal_path
from buffer.ledger import delivered_rows, range_problems

_WAL_HEADER = 32
_FRAME_HEADER = 24
_MAX_REPORTED = 50


def sqlite_problems(conn: sqlite3.Connection, full: bool) -> list[str]:
    """``integrity_check`` (or the faster ``quick_check``) messages; empty when healthy."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        rows = conn.execute(f"PRAGMA {pragma}({_MAX_REPORTED})").fetchall()
    except sqlite3.DatabaseError as exc:
        return [f"{pragma} could not run: {exc}"]
    messages = [str(r[0]) for r in rows]
    return [] if messages == ["ok"] else messages


def counter_problems(conn: sqlite3.Connection) -> list[str]:
    """Disagreements between the O(1) counters and the rows (full scans: for ``check`` only)."""
    problems = []
    try:
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        delivered = delivered_rows(conn)
        pending = conn.execute("SELECT count(*) FROM punches").fetchone()[0] - delivered
        top = conn.execute("SELECT coalesce(max(seq), 0) FROM punches").fetchone()[0]
        problems += range_problems(conn)
    except sqlite3.DatabaseError as exc:
        return [f"counters could not be audited: {exc}"]
    if counters.get("pending") != pending:
        problems.append(f"pending counter {counters.get('pending')} != {pending} pending rows")
    if counters.get("delivered") != delivered:
        problems.append(f"delivered counter {counters.get('delivered')} != {delivered} rows")
    if counters.get("seq", 0) < top:
        problems.append(f"sequence counter {counters.get('seq')} is below the highest seq {top}")
    return problems


def check_problems(conn: sqlite3.Connection, full: bool) -> list[str]:
    """Everything ``outbox check`` reports: SQLite's check plus the counter audit."""
    problems = sqlite_problems(conn, full)
    if not problems:
        problems = counter_problems(conn)
    return problems


def check_file(path: Path, full: bool, busy_timeout: float) -> list[str]:
    """``check_problems`` on a connection of its own, in one read transaction.

    A full check of a month-long backlog takes seconds: on its own connection it blocks
    neither this process's writers (no shared lock) nor other processes (WAL readers never
    block writers), and one read transaction makes counters and rows agree.
    """
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        return [f"cannot open {path} to check it: {exc}"]
    try:
        conn.execute("BEGIN")
        return check_problems(conn, full)
    except sqlite3.DatabaseError as exc:
        return [f"check failed: {exc}"]
    finally:
        conn.close()


def wal_cut_short(db_path: Path) -> str | None:
    """Why the WAL looks truncated, judged from the shared-memory index SQLite left behind.

    A WAL cut short is not corruption to SQLite: it silently drops the committed transactions
    in the missing frames. The ``-shm`` index left by the last writer records how many frames
    were committed (``mxFrame``) and the WAL salt; if the WAL file is now too short to hold
    them, or its salt changed, commits were lost and we must not carry on as if nothing
    happened. The index is not fsynced, so an unreadable or uninitialised one proves nothing
    (after a power cut it may be stale) and is ignored.
    """
    shm, wal = shm_path(db_path), wal_path(db_path)
    try:
        header = shm.read_bytes()[:96]
    except OSError:
        return None
    if len(header) < 96 or header[:48] != header[48:96]:
        return None  # not written or mid-update: proves nothing
    version, _unused, _change, is_init, _big_end, page_size_raw, max_frame = struct.unpack(
        "=IIIBBHI", header[:20]
    )
    salt = header[32:40]
    if version != 3007000 or not is_init or max_frame == 0:
        return None
    page_size = 65536 if page_size_raw == 1 else page_size_raw
    needed = _WAL_HEADER + max_frame * (_FRAME_HEADER + page_size)
    have = file_size(wal)
    if have < needed:
        return (
            f"the WAL {wal} holds {have} bytes but its index records {max_frame} committed "
            f"frames ({needed} bytes): the WAL was cut short and recent commits are missing"
        )
    try:
        with wal.open("rb") as fh:
            wal_salt = fh.read(_WAL_HEADER)[16:24]
    except OSError:
        return None
    if wal_salt != salt:
        return f"the WAL {wal} does not belong to its index (salt changed): it was replaced"
    return None
