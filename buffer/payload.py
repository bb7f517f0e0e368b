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

# ISO text as datetime.isoformat() writes it: no fraction when it is zero.
_ISO = "replace({0}, '.000000+', '+')"
_WALL_MATCHES = (
    "(strftime('%Y-%m-%dT%H:%M:%S', substr(time_utc, 1, 19), utc_offset_minutes || ' minutes')"
    " = substr(device_time, 1, 19) AND substr(time_utc, 20, 7) = "
    "CASE WHEN length(device_time) = 19 THEN '.000000' ELSE substr(device_time, 20) END)"
)
# "+HH:MM" by concatenation: printf() costs about twice as much per row. Same text for every
# offset a tzinfo can have (less than 24 hours either way, so two digits of hours).
_OFFSET = (
    "CASE WHEN utc_offset_minutes < 0 THEN '-' ELSE '+' END"
    " || substr('0' || (abs(utc_offset_minutes) / 60), -2)"
    " || ':' || substr('0' || (abs(utc_offset_minutes) % 60), -2)"
)
_LOCAL_KNOWN = "(time_utc IS NULL OR utc_offset_minutes IS NULL)"
_JSON = (
    "CASE WHEN suspect IS NULL AND raw IS NULL AND "
    f"({_LOCAL_KNOWN} OR {_WALL_MATCHES}) THEN CAST(json_object("
    "'id', id, 'seq', seq, 'gateway_id', gateway_id, 'site', ?, 'device_id', device_id, "
    "'device_serial', device_serial, 'employee', employee, 'card', card, "
    "'device_time', device_time, "
    f"'time', CASE WHEN {_LOCAL_KNOWN} THEN NULL ELSE device_time || {_OFFSET} END, "
    f"'time_utc', {_ISO.format('time_utc')}, 'utc_offset_minutes', utc_offset_minutes, "
    "'state', state, 'state_code', state_code, 'verify', verify, 'verify_code', verify_code, "
    "'source', source, 'kind', kind, 'void_of', void_of, 'operator', operator, "
    f"'reason', reason, 'entered_at', {_ISO.format('entered_at')}, "
    f"'received_at', {_ISO.format('received_at')}, 'suspect', json_array(), 'raw', NULL, "
    "'replayed', json(CASE WHEN attempts > 0 THEN 'true' ELSE 'false' END)) AS BLOB) END"
)
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
        rows = conn.execute(_SELECT, (site, after_seq, limit)).fetchall()
    except sqlite3.Error as exc:
        raise translate(exc, path, "reading the next batch") from exc
    return rows
