"""Integrity checks: SQLite's own, our counters and ``wall_ok`` marks, and a WAL cut short."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from buffer.database import file_size, shm_path, wal_path
from buffer.ledger import delivered_rows, range_problems
from buffer.payload_json import _WALL_MATCHES

_WAL_HEADER = 32
_FRAME_HEADER = 24
_MAX_REPORTED = 50
_SEQS_SHOWN = 5

# How the problem about wrong marks starts (the CLI words its advice by it).
BAD_MARKS = "wrong wall_ok marks"

# A mark (wall_ok = 1, set by buffer/ingest.py) makes the drain write device_time as the local
# time without checking it (buffer/payload_json.py). The verdict on a marked row is the drain's
# own check: 1 right, 0 wrong, NULL where SQLite cannot read the times (unixepoch() rounds the
# last half millisecond of year 9999 up to year 10000, which it refuses): Python decides those.
_VERDICT = (
    "CASE WHEN suspect IS NULL AND raw IS NULL AND time_utc IS NOT NULL"
    f" AND utc_offset_minutes IS NOT NULL THEN {_WALL_MATCHES} ELSE 0 END"
)
_DOUBTFUL_MARKS = (
    "SELECT seq, verdict, device_time, time_utc, utc_offset_minutes FROM ("  # noqa: S608
    f"SELECT seq, device_time, time_utc, utc_offset_minutes, {_VERDICT} AS verdict"
    " FROM punches WHERE wall_ok = 1) WHERE verdict IS NOT 1 ORDER BY seq"
)


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


def _wall_is(device_time: object, time_utc: object, offset: object) -> bool:
    """Whether ``device_time`` is the text isoformat() writes for ``time_utc`` + ``offset``."""
    if not isinstance(time_utc, str) or type(offset) is not int:
        return False
    try:
        utc = datetime.fromisoformat(time_utc)
        if utc.tzinfo is not None:
            utc = utc.astimezone(UTC).replace(tzinfo=None)
        return (utc + timedelta(minutes=offset)).isoformat() == device_time
    except (ValueError, OverflowError):
        return False


def bad_marks(conn: sqlite3.Connection) -> Iterator[int]:
    """Seqs of rows marked ``wall_ok`` whose times do not bear the mark out, in seq order."""
    for seq, verdict, device_time, time_utc, offset in conn.execute(_DOUBTFUL_MARKS):
        if verdict is not None or not _wall_is(device_time, time_utc, offset):
            yield seq


def mark_problems(conn: sqlite3.Connection) -> list[str]:
    """The wrong ``wall_ok`` marks as one problem (a full scan: for ``check`` only)."""
    count = 0
    shown: list[str] = []
    try:
        for seq in bad_marks(conn):
            count += 1
            if len(shown) < _SEQS_SHOWN:
                shown.append(str(seq))
    except sqlite3.DatabaseError as exc:
        return [f"wall_ok marks could not be audited: {exc}"]
    if not count:
        return []
    more = ", ..." if count > len(shown) else ""
    return [
        f"{BAD_MARKS} on {count} row(s) (seq {', '.join(shown)}{more}): marked as device time "
        "= UTC time + offset, but it is not, or the row is suspect, so the drain would send a "
        "wrong local time for these punches. Clearing the marks loses nothing and changes no "
        "other column (the drain then checks these rows itself): "
        "punchgate outbox check --clear-bad-marks"
    ]


def clear_bad_marks(conn: sqlite3.Connection) -> int:
    """Set ``wall_ok`` to NULL where it is wrong; the caller holds the write transaction."""
    seqs = [(seq,) for seq in bad_marks(conn)]  # read them all before writing the table
    conn.executemany("UPDATE punches SET wall_ok = NULL WHERE seq = ?", seqs)
    return len(seqs)


def check_problems(conn: sqlite3.Connection, full: bool) -> list[str]:
    """Everything ``outbox check`` reports: SQLite's check, then the counter and mark audits."""
    problems = sqlite_problems(conn, full)
    if not problems:
        problems = counter_problems(conn) + mark_problems(conn)
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
