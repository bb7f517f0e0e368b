"""The delivery side of the outbox: next batch in sequence order, marks, redelivery.

Every function is one short read or one short write transaction: the MQTT worker calls
``next_batch``, gets plain values back with no lock held, publishes, then calls a ``mark_*``.
Delivery state lives in seq ranges (``buffer/ledger.py``): marking delivered adds a range,
never rewrites rows. Rows stay pending until marked delivered, so rows in flight when the
process died are simply offered again after a restart (``replayed``: their seq is at or below
the ``sent`` counter that ``mark_sent`` raised before they were published).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from buffer import ledger
from buffer.database import read_transaction, write_transaction
from buffer.records import (
    SELECT_PENDING,
    StoredPunch,
    approx_json_size,
    decode,
    iso_utc,
    utc_now,
)

seq_runs = ledger.seq_runs


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


def pending_rows(
    conn: sqlite3.Connection, select: str, params: tuple[Any, ...], after_seq: int, limit: int
) -> list[Any]:
    """``select`` (``SELECT ... FROM punches``) of up to ``limit`` pending rows after
    ``after_seq``, in seq order.

    ``params`` are bound before the seq bounds (for parameters inside ``select``). Ranges of
    delivered rows are jumped over, so the cost is O(limit) at any outbox size. The caller
    holds a read transaction, so the ranges and the rows are one snapshot.
    """
    sql = f"{select} WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"
    out: list[Any] = []
    for after, before in ledger.pending_spans(conn, after_seq):
        out += conn.execute(sql, (*params, after, before, limit - len(out))).fetchall()
        if len(out) >= limit:
            break
    return out


def next_batch(
    conn: sqlite3.Connection, path: Path, limit: int, after_seq: int, max_bytes: int | None
) -> list[StoredPunch]:
    """Pending rows after ``after_seq`` in seq order: at most ``limit`` and ~``max_bytes``."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    with read_transaction(conn, path, "reading the next batch"):
        rows = pending_rows(conn, SELECT_PENDING, (), after_seq, limit)
    batch = [decode(r) for r in rows]
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


def mark_sent_seqs(conn: sqlite3.Connection, path: Path, seqs: Sequence[int]) -> int:
    """Record that rows up to ``max(seqs)`` are being offered: from now on they are "replayed".

    One counter, not a write per row: rows are offered in seq order, so every pending row at
    or below the counter was offered before (or made pending again by a redelivery).
    """
    if not seqs:
        return 0
    with bookkeeping_transaction(conn, path, "marking punches sent"):
        conn.execute("UPDATE counters SET value = max(value, ?) WHERE name = 'sent'", (max(seqs),))
    return len(seqs)


def sent_mark(conn: sqlite3.Connection) -> int:
    """The highest seq recorded as offered to the broker (see ``mark_sent_seqs``)."""
    return int(conn.execute("SELECT value FROM counters WHERE name = 'sent'").fetchone()[0])


def mark_sent_ahead(conn: sqlite3.Connection, path: Path, seq: int, ahead: int) -> int:
    """Raise the sent mark to ``seq + ahead`` at once (never past the newest row); returns it.

    The delivery worker offers rows in seq order and keeps what it actually sent in memory, so
    one write covers several pages. Rows between the rows really sent and the mark count as
    "replayed" only if the process dies first: a harmless "you may already have it".
    """
    with bookkeeping_transaction(conn, path, "marking punches sent"):
        conn.execute(
            "UPDATE counters SET value = max(value, "
            "min(?, (SELECT value FROM counters WHERE name = 'seq'))) WHERE name = 'sent'",
            (seq + ahead,),
        )
        return sent_mark(conn)


def mark_sent(conn: sqlite3.Connection, path: Path, ids: Sequence[str]) -> int:
    """``mark_sent_seqs`` by ids."""
    if not ids:
        return 0
    with bookkeeping_transaction(conn, path, "marking punches sent"):
        seqs = _seqs_of(conn, ids)
        if seqs:
            conn.execute(
                "UPDATE counters SET value = max(value, ?) WHERE name = 'sent'", (max(seqs),)
            )
    return len(seqs)


def _mark_failed(conn: sqlite3.Connection, seqs: list[int], error: str) -> int:
    changed = 0
    for first, last in seq_runs(seqs):
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
    return count
