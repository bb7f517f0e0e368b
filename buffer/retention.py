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
    """Delete delivered rows whose ``delivered_at`` is older than ``retention_days``.

    Each round is its own short transaction so the delivery worker and device workers are
    never blocked for long. The ``seq`` counter is untouched: numbers are never reused.
    """
    if retention_days < 0 or batch < 1:
        raise ValueError("retention_days must be >= 0 and batch >= 1")
    cutoff = iso_utc(now - timedelta(days=retention_days))
    total = 0
    for _ in range(_MAX_ROUNDS):
        with write_transaction(conn, path, "pruning delivered punches"):
            # The predicate is written literally so the partial index is used, and the
            # outer DELETE re-checks it: a pending row can never be deleted here.
            deleted = conn.execute(
                "DELETE FROM punches WHERE delivery = 'delivered' AND seq IN "
                "(SELECT seq FROM punches WHERE delivery = 'delivered' AND delivered_at < ? "
                "ORDER BY delivered_at LIMIT ?)",
                (cutoff, batch),
            ).rowcount
            if deleted:
                conn.execute(
                    "UPDATE counters SET value = value - ? WHERE name = 'delivered'", (deleted,)
                )
        total += deleted
        if deleted < batch:
            break
    return total
