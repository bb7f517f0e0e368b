"""Reading whatever rows are still readable out of a damaged outbox file."""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from buffer.records import STORED_COLUMNS

_CHUNK = 2048  # rows per range read; a failing range is bisected down to single rows
_MAX_PROBES = 200_000  # bound on the work spent on one damaged file
_KINDS = ("punch", "void")
_EPOCH = "1970-01-01T00:00:00.000000+00:00"  # a delivery time the damaged file did not keep
_STORED = ", ".join(STORED_COLUMNS)
# Salvaged rows: STORED_COLUMNS, then when the row was delivered (None: pending).
_V3_SELECT = f"SELECT {_STORED}, NULL FROM punches"  # noqa: S608 - constants
_V2_SELECT = (
    f"SELECT {_STORED}, CASE WHEN delivery = 'delivered' "  # noqa: S608 - constants
    f"THEN coalesce(delivered_at, '{_EPOCH}') END FROM punches"
)


RowSink = Callable[[list[tuple[Any, ...]]], None]
"""Takes salvaged rows chunk by chunk, in seq order (instead of ``SalvageResult.rows``)."""


@dataclass
class SalvageResult:
    """Rows read from a damaged file and where reading failed.

    Each row is the ``STORED_COLUMNS`` values followed by its delivery time (None: pending).
    """

    rows: list[tuple[Any, ...]] = field(default_factory=list)  # empty when given to a sink
    counter: int | None = None  # the file's sequence counter, when readable
    unreadable: list[tuple[int, int]] = field(default_factory=list)  # seq ranges that failed
    error: str | None = None  # why nothing at all could be read
    count: int = 0  # rows salvaged (kept in ``rows`` or given to the sink)
    max_seq: int = 0  # highest seq among salvaged rows (0 when none)


def salvage(db_file: Path, sink: RowSink | None = None) -> SalvageResult:
    """Read every readable, plausible punch row from ``db_file`` (a scratch copy: it may change).

    With ``sink``, rows go to it chunk by chunk and are not kept: a month-long backlog is
    millions of rows, ~1.2 KiB each in memory.
    """
    result = SalvageResult()
    try:
        conn = sqlite3.connect(str(db_file), isolation_level=None)
    except sqlite3.Error as exc:
        result.error = str(exc)
        return result
    try:
        result.counter = _scalar(conn, "SELECT value FROM counters WHERE name = 'seq'")
        low = _scalar(conn, "SELECT min(seq) FROM punches") or 1
        high = max(
            result.counter or 0,
            _scalar(conn, "SELECT max(seq) FROM punches") or 0,
        )
        if high == 0 and _scalar(conn, "SELECT count(*) FROM sqlite_master") is None:
            result.error = "the schema itself is unreadable"
            return result
        _read_ranges(conn, low, high, result, _select_for(conn), sink)
    finally:
        conn.close()
    return result


def _select_for(conn: sqlite3.Connection) -> str:
    """The row query for the file's schema: v1/v2 kept delivery state per row."""
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(punches)")}
    except sqlite3.DatabaseError:
        columns = set()
    return _V2_SELECT if "delivery" in columns else _V3_SELECT


def _delivered_ranges(conn: sqlite3.Connection) -> list[tuple[int, int, str]]:
    """A v3 file's delivered ranges, best effort: rows no readable range covers count as
    pending, so they are offered again with the same id (the backend de-duplicates)."""
    try:
        rows = conn.execute("SELECT lo, hi, at FROM delivered ORDER BY lo").fetchall()
    except sqlite3.DatabaseError:
        return []
    return [r for r in rows if all(isinstance(v, int) for v in r[:2]) and isinstance(r[2], str)]


def _scalar(conn: sqlite3.Connection, sql: str) -> int | None:
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None or not isinstance(row[0], int) else row[0]


def _read_ranges(
    conn: sqlite3.Connection,
    low: int,
    high: int,
    result: SalvageResult,
    select: str,
    sink: RowSink | None,
) -> None:
    # NOT INDEXED: walk the table b-tree by rowid; a damaged index must not hide good rows.
    sql = f"{select} NOT INDEXED WHERE seq BETWEEN ? AND ? ORDER BY seq"
    ranges = [] if select == _V2_SELECT else _delivered_ranges(conn)
    starts = [r[0] for r in ranges]
    # Ranges are made as the reading goes, and empty stretches are jumped over: ``high`` may
    # come from a damaged counter cell (any number), and a plan of every 2048-seq range up to
    # it could exhaust memory before the work limit applied.
    todo: list[tuple[int, int]] = []  # halves of a failing range, read before moving on
    start = low
    probes = 0
    while todo or start <= high:
        if todo:
            a, b = todo.pop()
        else:
            a, b = start, min(start + _CHUNK - 1, high)
            start = b + 1
        probes += 1
        if probes > _MAX_PROBES:
            result.unreadable.append((a, b))
            result.unreadable.extend(todo)
            if start <= high:
                result.unreadable.append((start, high))
            break
        try:
            rows = conn.execute(sql, (a, b)).fetchall()
        except sqlite3.DatabaseError:
            if a == b:
                _add_unreadable(result, a, a)
            else:
                mid = (a + b) // 2
                todo.extend([(mid + 1, b), (a, mid)])
            continue
        if not todo and start <= high:
            start = _next_seq(conn, start, high)
        good = []
        for row in rows:
            if _plausible(row):
                if ranges:
                    at = bisect.bisect_right(starts, row[1]) - 1
                    if at >= 0 and ranges[at][1] >= row[1]:
                        row = (*row[:-1], ranges[at][2])
                good.append(row)
            else:
                _add_unreadable(result, row[1], row[1])
        if good:
            result.count += len(good)
            result.max_seq = max(result.max_seq, max(r[1] for r in good))
            if sink is None:
                result.rows += good
            else:
                sink(good)
    result.unreadable.sort()


def _next_seq(conn: sqlite3.Connection, start: int, high: int) -> int:
    """Where the next row at or after ``start`` is (past ``high``: none); ``start`` if unsure."""
    try:
        row = conn.execute(
            "SELECT min(seq) FROM punches NOT INDEXED WHERE seq >= ?", (start,)
        ).fetchone()
    except sqlite3.DatabaseError:
        return start  # damage on the way: read range by range, and bisect what fails
    if row is None or row[0] is None:
        return high + 1
    return max(start, int(row[0])) if isinstance(row[0], int) else start


def _add_unreadable(result: SalvageResult, a: int, b: int) -> None:
    if result.unreadable and result.unreadable[-1][1] + 1 >= a:
        last = result.unreadable[-1]
        result.unreadable[-1] = (last[0], max(last[1], b))
    else:
        result.unreadable.append((a, b))


def _plausible(row: tuple[Any, ...]) -> bool:
    """Damaged cells can decode to garbage instead of failing: keep only rows that make sense."""
    values = dict(zip((*STORED_COLUMNS, "delivered_at"), row, strict=True))
    if not (isinstance(values["id"], str) and len(values["id"]) == 36):
        return False
    if not isinstance(values["seq"], int) or values["seq"] < 1:
        return False
    if values["kind"] not in _KINDS:
        return False
    if not isinstance(values["device_id"], str) or not isinstance(values["gateway_id"], str):
        return False
    try:
        datetime.fromisoformat(values["received_at"])
    except (TypeError, ValueError):
        return False
    return True
