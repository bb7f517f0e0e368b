"""Retention: delivered rows older than N days go, in small transactions; pending rows never."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from buffer.database import write_transaction
from buffer.records import iso_utc

MAX_ROUNDS = 1_000_000  # bound on the rounds of one prune; at batch=1000 a billion rows


def cutoff(retention_days: float, batch: int, now: datetime) -> str | None:
    """The delivery time before which rows go; None when none can be that old.

    Pruning works range by range (``buffer/ledger.py``): a range goes once its newest delivery
    is older than the cutoff, so a row may stay up to a day longer than ``retention_days``,
    never shorter. Only rows inside a delivered range are ever deleted: a pending row cannot be.
    The ``seq`` counter is untouched: numbers are never reused.
    """
    if not retention_days >= 0 or batch < 1:  # "not >=" also refuses NaN
        raise ValueError("retention_days must be >= 0 and batch >= 1")
    try:
        return iso_utc(now - timedelta(days=retention_days))
    except OverflowError:
        return None  # "keep for a million days": the cutoff lies before year 1, nothing is older


def prune_round(conn: sqlite3.Connection, path: Path, before: str, batch: int) -> int | None:
    """Delete up to ``batch`` rows of the oldest range delivered before ``before``, in one short
    transaction; how many (None when no such range is left).

    The caller runs round after round, letting the delivery and device workers write between
    them, so they are never blocked for long.
    """
    with write_transaction(conn, path, "pruning delivered punches"):
        old = conn.execute(
            "SELECT lo, hi FROM delivered WHERE at < ? ORDER BY lo LIMIT 1", (before,)
        ).fetchone()
        if old is None:
            return None
        deleted = conn.execute(
            "DELETE FROM punches WHERE seq IN "
            "(SELECT seq FROM punches WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?)",
            (old[0], old[1], batch),
        ).rowcount
        if deleted < batch:  # the range has no rows left: it covers nothing any more
            conn.execute("DELETE FROM delivered WHERE lo = ?", (old[0],))
        if deleted:
            conn.execute(
                "UPDATE counters SET value = value - ? WHERE name = 'delivered'", (deleted,)
            )
    return int(deleted)
