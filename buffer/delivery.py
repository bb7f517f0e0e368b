"""The delivery side of the outbox: next batch in sequence order, marks, redelivery.

Every function is one short statement or one short write transaction: the MQTT worker calls
``next_batch``, gets plain values back with no lock held, publishes, then calls a ``mark_*``.
Rows stay ``pending`` until marked delivered, so rows in flight when the process died are
simply offered again after a restart (with ``replayed`` true).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from buffer.database import translate, write_transaction
from buffer.records import SELECT, StoredPunch, approx_json_size, decode, iso_utc, utc_now


def _ids_param(ids: Sequence[str]) -> str:
    # One bound parameter for any number of ids: a JSON array expanded by json_each().
    return json.dumps(list(ids))


def next_batch(
    conn: sqlite3.Connection, path: Path, limit: int, after_seq: int, max_bytes: int | None
) -> list[StoredPunch]:
    """Pending rows after ``after_seq`` in seq order: at most ``limit`` and ~``max_bytes``."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    try:
        # The literal predicate selects the partial index punches_pending: cost is O(limit)
        # however many rows are pending. fetchall() ends the statement and its read lock.
        rows = conn.execute(
            f"{SELECT} INDEXED BY punches_pending "
            "WHERE delivery = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
    except sqlite3.Error as exc:
        raise translate(exc, path, "reading the next batch") from exc
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


# INDEXED BY pins the plans that keep these O(batch) at any outbox size: with no ANALYZE
# statistics the planner could otherwise pick a scan, and INDEXED BY fails loudly instead.
def mark_sent(conn: sqlite3.Connection, path: Path, ids: Sequence[str]) -> int:
    """Count a delivery attempt for pending rows about to be (or just) published."""
    if not ids:
        return 0
    with write_transaction(conn, path, "marking punches sent"):
        cur = conn.execute(
            "UPDATE punches INDEXED BY punches_id "
            "SET attempts = attempts + 1, in_attempt = 1, sent_at = ? "
            "WHERE id IN (SELECT value FROM json_each(?)) AND delivery = 'pending'",
            (iso_utc(utc_now()), _ids_param(ids)),
        )
    return cur.rowcount


def mark_failed(conn: sqlite3.Connection, path: Path, ids: Sequence[str], error: str) -> int:
    """Record a failed attempt; a row already counted by ``mark_sent`` is not counted twice."""
    if not ids:
        return 0
    with write_transaction(conn, path, "marking punches failed"):
        cur = conn.execute(
            "UPDATE punches INDEXED BY punches_id "
            "SET attempts = attempts + 1 - in_attempt, in_attempt = 0, last_error = ? "
            "WHERE id IN (SELECT value FROM json_each(?)) AND delivery = 'pending'",
            (error[:2000], _ids_param(ids)),
        )
    return cur.rowcount


def mark_delivered(conn: sqlite3.Connection, path: Path, ids: Sequence[str]) -> int:
    """Mark pending rows delivered; returns how many changed (already delivered ones are kept)."""
    if not ids:
        return 0
    with write_transaction(conn, path, "marking punches delivered"):
        seqs = conn.execute(
            "UPDATE punches INDEXED BY punches_id "
            "SET delivery = 'delivered', delivered_at = ?, in_attempt = 0 "
            "WHERE id IN (SELECT value FROM json_each(?)) AND delivery = 'pending' RETURNING seq",
            (iso_utc(utc_now()), _ids_param(ids)),
        ).fetchall()
        if seqs:
            top = max(s[0] for s in seqs)
            conn.execute(
                "UPDATE counters SET value = value + "
                "CASE name WHEN 'pending' THEN ? WHEN 'delivered' THEN ? END "
                "WHERE name IN ('pending', 'delivered')",
                (-len(seqs), len(seqs)),
            )
            conn.execute(
                "UPDATE counters SET value = max(value, ?) WHERE name = 'last_delivered_seq'",
                (top,),
            )
    return len(seqs)


def redeliver_from(conn: sqlite3.Connection, path: Path, seq: int) -> int:
    """Make delivered rows with ``seq >= N`` pending again (the backend lost them)."""
    with write_transaction(conn, path, "scheduling redelivery"):
        count = conn.execute(
            "UPDATE punches SET delivery = 'pending', delivered_at = NULL, last_error = NULL "
            "WHERE seq >= ? AND delivery = 'delivered'",
            (seq,),
        ).rowcount
        if count:
            conn.execute(
                "UPDATE counters SET value = value + "
                "CASE name WHEN 'pending' THEN ? WHEN 'delivered' THEN ? END "
                "WHERE name IN ('pending', 'delivered')",
                (count, -count),
            )
            last = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM punches "
                "WHERE seq < ? AND delivery = 'delivered'",
                (seq,),
            ).fetchone()[0]
            conn.execute("UPDATE counters SET value = ? WHERE name = 'last_delivered_seq'", (last,))
    return count


def seq_runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted, distinct ``seqs`` as runs of consecutive numbers: exactly the same set of rows.

    A batch read from contiguous pending rows is usually one run, so marking it is a range
    update on the primary key instead of one lookup per row.
    """
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


def mark_sent_seqs(conn: sqlite3.Connection, path: Path, seqs: Sequence[int]) -> int:
    """``mark_sent`` by sequence numbers (the delivery worker's hot path)."""
    runs = seq_runs(seqs)
    if not runs:
        return 0
    now = iso_utc(utc_now())
    with write_transaction(conn, path, "marking punches sent"):
        cur = conn.executemany(
            "UPDATE punches SET attempts = attempts + 1, in_attempt = 1, sent_at = ? "
            "WHERE seq BETWEEN ? AND ? AND delivery = 'pending'",
            [(now, first, last) for first, last in runs],
        )
    return cur.rowcount


def mark_delivered_seqs(conn: sqlite3.Connection, path: Path, seqs: Sequence[int]) -> int:
    """``mark_delivered`` by sequence numbers (the delivery worker's hot path)."""
    runs = seq_runs(seqs)
    if not runs:
        return 0
    now = iso_utc(utc_now())
    with write_transaction(conn, path, "marking punches delivered"):
        changed = 0
        top = 0
        for first, last in runs:
            # Every row of a run was in the batch, and after this update its last row is
            # delivered (now or before): no RETURNING row per punch is needed for the top.
            count = conn.execute(
                "UPDATE punches SET delivery = 'delivered', delivered_at = ?, in_attempt = 0 "
                "WHERE seq BETWEEN ? AND ? AND delivery = 'pending'",
                (now, first, last),
            ).rowcount
            if count:
                changed += count
                top = last
        if changed:
            conn.execute(
                "UPDATE counters SET value = value + "
                "CASE name WHEN 'pending' THEN ? WHEN 'delivered' THEN ? END "
                "WHERE name IN ('pending', 'delivered')",
                (-changed, changed),
            )
            conn.execute(
                "UPDATE counters SET value = max(value, ?) WHERE name = 'last_delivered_seq'",
                (top,),
            )
    return changed
