"""Editing an outbox file behind the outbox's back, as a writer bug or a hand edit would."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def edit(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement on the file in a transaction of its own."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def query(path: Path, sql: str) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def shift_device_time(path: Path, seq: int, delta: timedelta) -> None:
    """Move one row's stored device time, leaving its UTC time and its mark as they are."""
    (row,) = query(path, f"SELECT device_time FROM punches WHERE seq = {int(seq)}")  # noqa: S608
    shifted = (datetime.fromisoformat(row["device_time"]) + delta).isoformat()
    edit(path, "UPDATE punches SET device_time = ? WHERE seq = ?", (shifted, seq))
