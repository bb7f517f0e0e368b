"""Which punches are delivered: ranges of seq numbers, not a state column rewritten per row.

Marking a batch delivered used to rewrite every row and two indexes (≈ 5 µs a punch, a quarter
of the MQTT drain's cost). Deliveries come in seq order, so the ``delivered`` table keeps them
as ranges instead: ``(lo, hi, at)`` means every row with ``lo <= seq <= hi`` is delivered, the
newest of them at ``at``. Ranges never overlap; a row no range covers is pending.

A new range merges into a neighbour when no row lies between them and both were delivered on
the same UTC day: the table stays a few rows per day, and retention (per range) keeps a day's
granularity. A range may span numbers that have no row (pruned rows, the jump after a
recovery): seq numbers are never reused and a new row always gets a number above every range,
so no new row is ever born covered. Only rows that exist are ever newly covered.

Every function runs inside the caller's transaction (a write transaction for the ``mark`` and
``uncover`` side, any transaction for the reads).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

# A pending row's delivery time is NULL. Correlated subqueries for a SELECT ... FROM punches:
# the range with the greatest lo <= seq is the only one that can cover the row (O(log ranges)).
DELIVERED_AT_SQL = (
    "(SELECT CASE WHEN d.hi >= punches.seq THEN d.at END FROM delivered d "
    "WHERE d.lo <= punches.seq ORDER BY d.lo DESC LIMIT 1)"
)
PENDING_SQL = (
    "coalesce((SELECT d.hi FROM delivered d WHERE d.lo <= punches.seq "
    "ORDER BY d.lo DESC LIMIT 1), 0) < punches.seq"
)
# "Replayed": offered to the broker before (see mark_sent) or counted as a failed attempt.
REPLAYED_SQL = "(attempts > 0 OR seq <= (SELECT value FROM counters WHERE name = 'sent'))"

NO_BOUND = 2**62  # above any seq: "no range after this one"
_MAX_STEPS = 1_000_000  # bound on ranges walked by one call; each step passes one range
_COVER = "SELECT lo, hi, at FROM delivered WHERE lo <= ? ORDER BY lo DESC LIMIT 1"
_NEXT = "SELECT lo FROM delivered WHERE lo > ? ORDER BY lo LIMIT 1"

Range = tuple[int, int, str]


def covering(conn: sqlite3.Connection, seq: int) -> Range | None:
    """The range that covers ``seq``, if any."""
    row = conn.execute(_COVER, (seq,)).fetchone()
    return row if row is not None and row[1] >= seq else None


def pending_spans(conn: sqlite3.Connection, after_seq: int) -> Iterator[tuple[int, int]]:
    """Open intervals ``(after, before)`` of seq numbers no range covers, ascending.

    Every row with ``after < seq < before`` is pending; the last interval ends at ``NO_BOUND``.
    A reader takes rows interval by interval until it has enough: ranges are jumped over, so
    reading pending rows costs O(rows + ranges passed), never a scan of delivered rows.
    """
    pos = after_seq
    for _ in range(_MAX_STEPS):
        cover = covering(conn, pos + 1)
        if cover is not None:
            pos = cover[1]
            continue
        nxt = conn.execute(_NEXT, (pos,)).fetchone()
        if nxt is None:
            yield pos, NO_BOUND
            return
        yield pos, nxt[0]
        pos = nxt[0] - 1


def first_pending(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """``(seq, received_at)`` of the oldest pending row, or None."""
    for after, before in pending_spans(conn, 0):
        row = conn.execute(
            "SELECT seq, received_at FROM punches WHERE seq > ? AND seq < ? ORDER BY seq LIMIT 1",
            (after, before),
        ).fetchone()
        if row is not None:
            return row[0], row[1]
    return None


def seq_runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted, distinct ``seqs`` as runs of consecutive numbers: exactly the same set."""
    runs: list[tuple[int, int]] = []
    ordered = sorted(set(seqs))
    if not ordered:
        return runs
    first = last = ordered[0]
    for seq in ordered[1:]:
        if seq != last + 1:
            runs.append((first, last))
            first = seq
        last = seq
    runs.append((first, last))
    return runs


def mark(conn: sqlite3.Connection, seqs: Sequence[int], now: str) -> tuple[int, int]:
    """Cover the rows with these seqs; returns (rows newly delivered, highest of them or 0).

    Numbers with no row are ignored, and rows already covered are not counted again.
    """
    changed = top = 0
    for first, last in seq_runs(seqs):
        for lo, hi in _uncovered(conn, first, last):
            count, low, high = conn.execute(
                "SELECT count(*), min(seq), max(seq) FROM punches WHERE seq BETWEEN ? AND ?",
                (lo, hi),
            ).fetchone()
            if not count:
                continue
            # Only rows that exist: a range must never reach a number a new row could get.
            _add(conn, low, high, now)
            changed += count
            top = max(top, high)
    return changed, top


def _uncovered(conn: sqlite3.Connection, first: int, last: int) -> list[tuple[int, int]]:
    """The parts of ``first..last`` no range covers."""
    start = covering(conn, first)
    ranges = conn.execute(
        "SELECT lo, hi FROM delivered WHERE lo BETWEEN ? AND ? ORDER BY lo",
        (first if start is None else start[0], last),
    ).fetchall()
    parts = []
    pos = first
    for lo, hi in ranges:
        if lo > pos:
            parts.append((pos, min(lo - 1, last)))
        pos = max(pos, hi + 1)
        if pos > last:
            break
    if pos <= last:
        parts.append((pos, last))
    return parts


def _nothing_between(conn: sqlite3.Connection, low: int, high: int) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM punches WHERE seq > ? AND seq < ? LIMIT 1", (low, high)
        ).fetchone()
        is None
    )


def _add(conn: sqlite3.Connection, lo: int, hi: int, now: str) -> None:
    """Record ``lo..hi`` (uncovered, both ends existing rows), merged with same-day neighbours."""
    day = now[:10]
    left = conn.execute(
        "SELECT lo, hi, at FROM delivered WHERE lo < ? ORDER BY lo DESC LIMIT 1", (lo,)
    ).fetchone()
    right = conn.execute(
        "SELECT lo, hi, at FROM delivered WHERE lo > ? ORDER BY lo LIMIT 1", (hi,)
    ).fetchone()
    join_left = left is not None and left[2][:10] == day and _nothing_between(conn, left[1], lo)
    join_right = right is not None and right[2][:10] == day and _nothing_between(conn, hi, right[0])
    if join_left and join_right:
        conn.execute("DELETE FROM delivered WHERE lo = ?", (right[0],))
        conn.execute("UPDATE delivered SET hi = ?, at = ? WHERE lo = ?", (right[1], now, left[0]))
    elif join_left:
        conn.execute("UPDATE delivered SET hi = ?, at = ? WHERE lo = ?", (hi, now, left[0]))
    elif join_right:
        conn.execute("UPDATE delivered SET lo = ?, at = ? WHERE lo = ?", (lo, now, right[0]))
    else:
        conn.execute("INSERT INTO delivered(lo, hi, at) VALUES (?, ?, ?)", (lo, hi, now))


def _rows_between(conn: sqlite3.Connection, lo: int, hi: int) -> int:
    return int(
        conn.execute("SELECT count(*) FROM punches WHERE seq BETWEEN ? AND ?", (lo, hi)).fetchone()[
            0
        ]
    )


def uncover_from(conn: sqlite3.Connection, seq: int) -> int:
    """Make every delivered row with ``seq >= N`` pending again; returns how many."""
    count = 0
    cover = covering(conn, seq)
    if cover is not None and cover[0] < seq:
        count += _rows_between(conn, seq, cover[1])
        conn.execute("UPDATE delivered SET hi = ? WHERE lo = ?", (seq - 1, cover[0]))
    for lo, hi in conn.execute(
        "SELECT lo, hi FROM delivered WHERE lo >= ? ORDER BY lo", (seq,)
    ).fetchall():
        count += _rows_between(conn, lo, hi)
    conn.execute("DELETE FROM delivered WHERE lo >= ?", (seq,))
    return count


def delivered_rows(conn: sqlite3.Connection) -> int:
    """How many rows the ranges cover (a full count: for audits and recounts)."""
    return int(
        conn.execute(
            "SELECT coalesce(sum("
            "(SELECT count(*) FROM punches WHERE seq BETWEEN d.lo AND d.hi)), 0) FROM delivered d"
        ).fetchone()[0]
    )


def last_delivered_seq(conn: sqlite3.Connection) -> int:
    """The highest seq of a delivered row (0 when none)."""
    for lo, hi in conn.execute("SELECT lo, hi FROM delivered ORDER BY lo DESC"):
        found = conn.execute(
            "SELECT max(seq) FROM punches WHERE seq BETWEEN ? AND ?", (lo, hi)
        ).fetchone()[0]
        if found is not None:
            return int(found)
    return 0


def range_problems(conn: sqlite3.Connection) -> list[str]:
    """Ranges that are empty, overlap, or reach past the sequence counter."""
    problems = []
    bad = conn.execute("SELECT lo, hi FROM delivered WHERE hi < lo LIMIT 5").fetchall()
    problems += [f"delivered range {lo}..{hi} is empty (hi below lo)" for lo, hi in bad]
    overlaps = conn.execute(
        "SELECT a.lo, a.hi, b.lo FROM delivered a JOIN delivered b "
        "ON b.lo > a.lo AND b.lo <= a.hi LIMIT 5"
    ).fetchall()
    problems += [f"delivered range {a}..{b} overlaps the one from {c}" for a, b, c in overlaps]
    counter = conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
    top = conn.execute("SELECT max(hi) FROM delivered").fetchone()[0]
    if counter is not None and top is not None and top > counter[0]:
        problems.append(
            f"a delivered range reaches seq {top}, past the sequence counter {counter[0]}: "
            "new punches would be born delivered"
        )
    return problems
