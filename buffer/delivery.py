"""The delivery side of the outbox: next batch in sequence order, marks, redelivery.

Every function is one short read or one short write transaction: the MQTT worker calls
``next_batch``, gets plain values back with no lock held, publishes, then calls a ``mark_*``.
Delivery state lives in seq ranges (``buffer/ledger.py``): marking delivered adds a range,
never rewrites rows. Rows stay pending until marked delivered, so rows in flight when the
process died are simply offered again after a restart (``replayed``: their seq is at or below
the ``sent`` mark, raised before they were published).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from buffer import ledger
from buffer.database import read_transaction, write_transaction
from buffer.records import (
    SELECT_PENDING,
    StoredPunch,
    approx_json_size,
    decode_rows,
    iso_utc,
    utc_now,
)


@contextmanager
def bookkeeping_transaction(conn: sqlite3.Connection, path: Path, what: str) -> Iterator[None]:
    """A write transaction committed without an fsync, for delivery marks only.

    Punches are stored with ``synchronous=FULL``: a stored punch survives a power cut. The
    marks of the delivery hot path (sent, delivered) are bookkeeping about punches the backend
    may have: such a commit survives a crash of the process (the WAL frame is in the OS cache)
    and the next durable commit (any stored punch, a checkpoint at close) syncs it too. Only a
    power cut right after it can lose it, and then those punches are sent again with the same
    ids: at least once, never lost. An fsync per mark cost the MQTT drain a fifth of its time.
    """
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        with write_transaction(conn, path, what):
            yield
    finally:
        conn.execute("PRAGMA synchronous=FULL")


def _ids_param(ids: Sequence[str]) -> str:
    # One bound parameter for any number of ids: a JSON array expanded by json_each().
    return json.dumps(list(ids))


SPAN = "WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"  # bound: after, before, limit


def over_pending(
    conn: sqlite3.Connection,
    sql: str,
    params: tuple[Any, ...],
    after_seq: int,
    limit: int,
    rows_in: Callable[[Any], int] | None = None,
) -> list[Any]:
    """Run ``sql`` (which holds ``SPAN``) on the spans of pending rows after ``after_seq``, in
    order, until it has covered ``limit`` rows; returns its result rows.

    ``params`` are bound before the span's bounds. ``rows_in(result_row)`` says how many punch
    rows a result row stands for when ``sql`` aggregates a span (default: one each). Ranges
    of delivered rows are jumped over, so the cost is O(limit) at any outbox size. The caller
    holds a read transaction, so the ranges and the rows are one snapshot.
    """
    out: list[Any] = []
    seen = 0
    for after, before in ledger.pending_spans(conn, after_seq):
        found = conn.execute(sql, (*params, after, before, limit - seen)).fetchall()
        out += found
        seen += len(found) if rows_in is None else sum(map(rows_in, found))
        if seen >= limit:
            break
    return out


def pending_rows(
    conn: sqlite3.Connection, select: str, params: tuple[Any, ...], after_seq: int, limit: int
) -> list[Any]:
    """``select`` (``SELECT ... FROM punches``) of up to ``limit`` pending rows after
    ``after_seq``, in seq order (see ``over_pending``)."""
    return over_pending(conn, f"{select} {SPAN}", params, after_seq, limit)


def next_batch(
    conn: sqlite3.Connection, path: Path, limit: int, after_seq: int, max_bytes: int | None
) -> list[StoredPunch]:
    """Pending rows after ``after_seq`` in seq order: at most ``limit`` and ~``max_bytes``."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    with read_transaction(conn, path, "reading the next batch"):
        rows = pending_rows(conn, SELECT_PENDING, (), after_seq, limit)
    batch = decode_rows(rows)
    if max_bytes is None or not batch:
        return batch
    kept: list[StoredPunch] = []
    total = 0
    for row in batch:
        total += approx_json_size(row)
        if kept and total > max_bytes:
            break
        kept.append(row)  # the first row always goes, or an oversized row would block forever
    return kept


def _seqs_of(conn: sqlite3.Connection, ids: Sequence[str]) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT seq FROM punches INDEXED BY punches_id "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (_ids_param(ids),),
        )
    ]


def sent_mark(conn: sqlite3.Connection) -> int:
    """The highest seq recorded as offered to the broker: rows up to it are "replayed"."""
    return int(conn.execute("SELECT value FROM counters WHERE name = 'sent'").fetchone()[0])


def _raise_sent(conn: sqlite3.Connection, up_to: int) -> int:
    # Never past the newest row (a new punch is never born replayed), never lowered.
    conn.execute(
        "UPDATE counters SET value = max(value, "
        "min(?, (SELECT value FROM counters WHERE name = 'seq'))) WHERE name = 'sent'",
        (up_to,),
    )
    return sent_mark(conn)


def mark_sent_ahead(conn: sqlite3.Connection, path: Path, seq: int, ahead: int) -> int:
    """Raise the sent mark to ``seq + ahead`` at once (never past the newest row); returns it.

    One counter, not a write per row: the delivery worker offers rows in seq order and keeps
    what it actually sent in memory, so one write covers several pages. Rows between those
    really sent and the mark count as "replayed" only if the process dies first: a harmless
    "you may already have it".
    """
    with bookkeeping_transaction(conn, path, "marking punches sent"):
        return _raise_sent(conn, seq + ahead)


def mark_sent(conn: sqlite3.Connection, path: Path, ids: Sequence[str]) -> int:
    """Raise the sent mark to the highest of these rows; returns how many were found."""
    if not ids:
        return 0
    with bookkeeping_transaction(conn, path, "marking punches sent"):
        seqs = _seqs_of(conn, ids)
        if seqs:
            _raise_sent(conn, max(seqs))
    return len(seqs)


def _mark_failed(conn: sqlite3.Connection, seqs: list[int], error: str) -> int:
    changed = 0
    for first, last in ledger.seq_runs(seqs):
        changed += conn.execute(
            "UPDATE punches SET attempts = attempts + 1, last_error = ? "  # noqa: S608
            f"WHERE seq BETWEEN ? AND ? AND {ledger.PENDING_SQL}",  # a constant
            (error[:2000], first, last),
        ).rowcount
    return changed


def mark_failed(conn: sqlite3.Connection, path: Path, ids: Sequence[str], error: str) -> int:
    """Count a failed attempt on these pending rows and keep the error for diagnostics."""
    if not ids:
        return 0
    with write_transaction(conn, path, "marking punches failed"):
        return _mark_failed(conn, _seqs_of(conn, ids), error)


def mark_failed_seqs(conn: sqlite3.Connection, path: Path, seqs: Sequence[int], error: str) -> int:
    """``mark_failed`` by sequence numbers (a whole in-flight window at once)."""
    if not seqs:
        return 0
    with write_transaction(conn, path, "marking punches failed"):
        return _mark_failed(conn, list(seqs), error)


def _mark_delivered(conn: sqlite3.Connection, seqs: Sequence[int]) -> int:
    changed, top = ledger.mark(conn, seqs, iso_utc(utc_now()))
    if changed:
        conn.execute(
            "UPDATE counters SET value = value + "
            "CASE name WHEN 'pending' THEN ? WHEN 'delivered' THEN ? END "
            "WHERE name IN ('pending', 'delivered')",
            (-changed, changed),
        )
        conn.execute(
            "UPDATE counters SET value = max(value, ?) WHERE name = 'last_delivered_seq'", (top,)
        )
    return changed


def mark_delivered(conn: sqlite3.Connection, path: Path, ids: Sequence[str]) -> int:
    """Mark pending rows delivered; returns how many changed (already delivered ones are kept)."""
    if not ids:
        return 0
    with bookkeeping_transaction(conn, path, "marking punches delivered"):
        return _mark_delivered(conn, _seqs_of(conn, ids))


def mark_delivered_seqs(conn: sqlite3.Connection, path: Path, seqs: Sequence[int]) -> int:
    """``mark_delivered`` by sequence numbers (the delivery worker's hot path)."""
    if not seqs:
        return 0
    with bookkeeping_transaction(conn, path, "marking punches delivered"):
        return _mark_delivered(conn, seqs)


def redeliver_from(conn: sqlite3.Connection, path: Path, seq: int) -> int:
    """Make delivered rows with ``seq >= N`` pending again (the backend lost them)."""
    with write_transaction(conn, path, "scheduling redelivery"):
        count = ledger.uncover_from(conn, seq)
        if count:
            conn.execute(
                "UPDATE counters SET value = value + "
                "CASE name WHEN 'pending' THEN ? WHEN 'delivered' THEN ? END "
                "WHERE name IN ('pending', 'delivered')",
                (count, -count),
            )
            conn.execute(
                "UPDATE counters SET value = ? WHERE name = 'last_delivered_seq'",
                (ledger.last_delivered_seq(conn),),
            )
            conn.execute(
                "INSERT INTO counters(name, value) VALUES ('rewinds', 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1"
            )
    return count


def rewinds(conn: sqlite3.Connection) -> int:
    """How often rows were made pending again behind the delivery worker (any process).

    The worker reads forward from a cursor; a technician's ``outbox redeliver`` in another
    process puts rows back below it, which only this count tells the worker about.
    """
    row = conn.execute("SELECT value FROM counters WHERE name = 'rewinds'").fetchone()
    return 0 if row is None else int(row[0])


def outbox_id(conn: sqlite3.Connection) -> str:
    """The id of this outbox's ``seq`` numbering, as the contract writes it (16 hex digits)."""
    row = conn.execute("SELECT value FROM counters WHERE name = 'outbox_id'").fetchone()
    return f"{int(row[0]):016x}"
