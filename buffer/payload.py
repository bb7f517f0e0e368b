"""Contract JSON of pending rows, built by SQLite: the delivery worker's hot path.

Turning rows into ``StoredPunch`` objects and those into JSON cost the MQTT drain most of its
time (datetimes parsed, then formatted again). Here SQLite writes each punch object itself
from the stored text, which already is in the contract's formats: ISO times (a UTC time with
no fraction drops the stored ``.000000``, as ``datetime.isoformat()`` does) and the local
``time`` as the terminal's wall time plus the offset.

SQLite's date functions only keep milliseconds, so the local time is taken from SQL only when
it provably equals ``device_time`` (same seconds, same fraction). Rows where that does not
hold (a DST shift), suspect rows (flags, raw bytes) are rare: their JSON is ``None`` and the
caller encodes them from the full row. The tests check every kind of row against the
contract's reference encoder.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from buffer.database import translate
from buffer.payload_json import JSON as _JSON

# The literal predicate selects the partial index punches_pending (see delivery.next_batch).
_SELECT = (
    f"SELECT seq, id, {_JSON} FROM punches INDEXED BY punches_pending "  # noqa: S608 - constants
    "WHERE delivery = 'pending' AND seq > ? ORDER BY seq LIMIT ?"
)


# (seq, id, contract JSON as UTF-8 bytes, ready to publish): the JSON is None when SQL cannot
# write the row exactly; the caller encodes that one from ``Outbox.get(id)``. Plain tuples
# (a class per row costs as much again) and bytes (no decode and encode again per row).
PayloadRow = tuple[int, str, bytes | None]


def next_payloads(
    conn: sqlite3.Connection, path: Path, limit: int, after_seq: int, site: str
) -> list[PayloadRow]:
    """Pending rows after ``after_seq`` in seq order (at most ``limit``), as contract JSON."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    try:
        rows = conn.execute(_SELECT, (site, -1, after_seq, limit)).fetchall()
    except sqlite3.Error as exc:
        raise translate(exc, path, "reading the next batch") from exc
    return rows
