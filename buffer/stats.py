"""Outbox statistics, read in O(devices): counters kept in the write transactions, not COUNT(*)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from buffer.database import file_size, free_bytes, translate, wal_path
from buffer.ledger import first_pending
from buffer.records import utc_now
from buffer.schema import user_version


@dataclass(frozen=True, slots=True)
class DeviceStats:
    """What the outbox knows about one terminal."""

    device_id: str
    serial: str | None
    last_seq: int | None
    last_punch_utc: str | None
    last_device_time: str | None
    watermark: dict[str, Any] | None
    updated_at: str | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot of the outbox for status messages, ``outbox stats`` and the doctor."""

    path: str
    schema_version: int
    pending: int
    oldest_pending_age_s: float | None
    oldest_pending_seq: int | None
    delivered: int
    last_delivered_seq: int
    last_seq: int
    db_size_bytes: int
    wal_size_bytes: int
    free_disk_bytes: int
    disk_reserve_bytes: int
    disk_alarm: bool
    devices: list[DeviceStats] = field(default_factory=list)
    recoveries: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def read_stats(conn: sqlite3.Connection, path: Path, reserve: int, disk_alarm: bool) -> OutboxStats:
    """Gather the stats in one read transaction, so the numbers agree with each other."""
    try:
        conn.execute("BEGIN")
        try:
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            oldest = first_pending(conn)
            devices = conn.execute(
                "SELECT device_id, serial, last_seq, last_punch_utc, last_device_time, "
                "watermark, updated_at FROM devices ORDER BY device_id"
            ).fetchall()
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            page_count = conn.execute("PRAGMA page_count").fetchone()[0]
            version = user_version(conn)
            recoveries = conn.execute("SELECT count(*) FROM recoveries").fetchone()[0]
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise translate(exc, path, "reading outbox stats") from exc
    age = None
    if oldest is not None:
        try:
            age = max(0.0, (utc_now() - datetime.fromisoformat(oldest[1])).total_seconds())
        except (TypeError, ValueError):
            age = None  # a damaged receive time must not take the stats (and status) down
    return OutboxStats(
        path=str(path),
        schema_version=version,
        pending=int(counters.get("pending", 0)),
        oldest_pending_age_s=age,
        oldest_pending_seq=None if oldest is None else oldest[0],
        delivered=int(counters.get("delivered", 0)),
        last_delivered_seq=int(counters.get("last_delivered_seq", 0)),
        last_seq=int(counters.get("seq", 0)),
        db_size_bytes=page_size * page_count,
        wal_size_bytes=file_size(wal_path(path)),
        free_disk_bytes=free_bytes(path.parent),
        disk_reserve_bytes=reserve,
        disk_alarm=disk_alarm,
        devices=[
            DeviceStats(
                device_id=d[0],
                serial=d[1],
                last_seq=d[2],
                last_punch_utc=d[3],
                last_device_time=d[4],
                watermark=None if d[5] is None else json.loads(d[5]),
                updated_at=d[6],
            )
            for d in devices
        ],
        recoveries=int(recoveries),
    )
