"""Retention: delivered rows older than N days go, in small transactions; pending rows never."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from buffer.database import write_transaction
from buffer.records import iso_utc

_MAX_ROUNDS = 1_000_000  # bound on the loop; at batch=1000 that is a billion rows


def prune(
    conn: sqlite3.Connection, path: Path, retention_days: float, batch: int, now: datetime
) -> int:
    """Delete delivered rows whose delivery is older than ``retention_days``.

    Works range by range (``buffer/ledger.py``): a range goes once its newest delivery is
    older than the cutoff, so a row may stay up to a day longer than ``retention_days``, never
    shorter. Only rows inside a delivered range are ever deleted: a pending row cannot be.
    Each round is its own short transaction so the delivery worker and device workers are
    never blocked for long. The ``seq`` counter is untouched: numbers are never reused.
    """
    if not retention_days >= 0 or batch < 1:  # "not >=" also refuses NaN
        raise ValueError("retention_days must be >= 0 and batch >= 1")
    try:
        cutoff = iso_utc(now - timedelta(days=retention_days))
    except OverflowError:
        return 0  # "keep for a million days": the cutoff lies before year 1, nothing is older
    total = 0
    for _ in range(_MAX_ROUNDS):
        with write_transaction(conn, path, "pruning delivered punches"):
            old = conn.execute(
                "SELECT lo, hi FROM delivered WHERE at < ? ORDER BY lo LIMIT 1", (cutoff,)
            ).fetchone()
            if old is None:
                break
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
        total += deleted
    return total
