"""The SQL expression that writes one pending row's contract JSON (see buffer/payload.py).

Kept apart from the query so the expression can be tuned on its own: it is most of the cost of
reading a batch. ``JSON`` takes two bound parameters: the site name, then the highest seq
ever handed to the broker (rows up to it are ``replayed``).

The stored texts are what ``datetime.isoformat()`` writes (``device_time`` naive, the others
``iso_utc`` with six fraction digits): the expression relies on that, as it always has (it
writes ``device_time`` as stored). tests/buffer/test_payload_json*.py check every part of it
against the contract's reference encoder, over all dates from year 1 to 9999 and all offsets.
"""

from __future__ import annotations

# ISO text as datetime.isoformat() writes it: no fraction when it is zero.
_ISO = "replace({0}, '.000000+', '+')"

# The local time is device_time itself when device_time == time_utc + offset, exactly (to the
# microsecond); otherwise (a DST gap, odd data) the row is left to the Python encoder.
# - Whole seconds by unixepoch(): it truncates to the second, and both sides carry the same
#   fraction (checked below), so the fraction adds the same to both and cancels out. (SQLite
#   rounds a fraction to milliseconds first: from .999500 up both sides round up to the next
#   second, below it neither does; the tests pin this for every second of a minute.)
# - The fraction as text: the same six digits, or none in device_time and ".000000" in UTC.
#   This also limits device_time to 19 characters, or 19 plus that fraction.
# - The GLOB keeps the device time's canonical shape (unixepoch() also reads "2024-06-01
#   09:00:00", julian day numbers, ...): with the digits unixepoch() requires, the text is what
#   isoformat() writes for a valid datetime, or no datetime at all (e.g. February 30, which
#   no writer can store).
# This is about six times cheaper than formatting time_utc + offset with strftime() and
# comparing texts, and accepts exactly the same rows (see the tests).
_WALL_MATCHES = (
    "(unixepoch(device_time) - unixepoch(time_utc) = utc_offset_minutes * 60"
    " AND substr(time_utc, 20, 7) = "
    "CASE WHEN length(device_time) = 19 THEN '.000000' ELSE substr(device_time, 20) END"
    " AND device_time GLOB '????-??-??T??:??:??*')"
)


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


# "+HH:MM" of every offset a tzinfo can have (less than 24 hours either way), six bytes each,
# looked up by position: one substr() of a blob (constant time, unlike a text's substr()) is
# several times cheaper than formatting the text per row. Offsets outside that range (no
# writer stores them) keep the formula by concatenation.
_OFFSET_MAX = 1439
_OFFSET_TABLE = "".join(_offset_text(m) for m in range(-_OFFSET_MAX, _OFFSET_MAX + 1))
_OFFSET_FORMULA = (
    "CASE WHEN utc_offset_minutes < 0 THEN '-' ELSE '+' END"
    " || substr('0' || (abs(utc_offset_minutes) / 60), -2)"
    " || ':' || substr('0' || (abs(utc_offset_minutes) % 60), -2)"
)
_OFFSET = (
    f"CASE WHEN utc_offset_minutes BETWEEN -{_OFFSET_MAX} AND {_OFFSET_MAX}"
    f" THEN substr(X'{_OFFSET_TABLE.encode('ascii').hex().upper()}',"
    f" utc_offset_minutes * 6 + {_OFFSET_MAX * 6 + 1}, 6)"
    f" ELSE {_OFFSET_FORMULA} END"
)
_LOCAL_KNOWN = "(time_utc IS NULL OR utc_offset_minutes IS NULL)"
# json('true') and json('false') are constants: SQLite computes them once per statement
# instead of parsing a text per row.
_REPLAYED = "CASE WHEN attempts > 0 OR seq <= ? THEN json('true') ELSE json('false') END"
# wall_ok = 1: the writer already found device_time == time_utc + offset, to the microsecond
# (buffer/ingest.py, for ordinary terminal batches); the check above is for the other rows, and
# about a fifth of this expression's cost where it runs.
JSON = (
    "CASE WHEN suspect IS NULL AND raw IS NULL AND "
    f"(wall_ok = 1 OR {_LOCAL_KNOWN} OR {_WALL_MATCHES}) THEN CAST(json_object("
    "'id', id, 'seq', seq, 'gateway_id', gateway_id, 'site', ?, 'device_id', device_id, "
    "'device_serial', device_serial, 'employee', employee, 'card', card, "
    "'device_time', device_time, "
    f"'time', CASE WHEN {_LOCAL_KNOWN} THEN NULL ELSE device_time || {_OFFSET} END, "
    f"'time_utc', {_ISO.format('time_utc')}, 'utc_offset_minutes', utc_offset_minutes, "
    "'state', state, 'state_code', state_code, 'verify', verify, 'verify_code', verify_code, "
    "'source', source, 'kind', kind, 'void_of', void_of, 'operator', operator, "
    f"'reason', reason, 'entered_at', {_ISO.format('entered_at')}, "
    f"'received_at', {_ISO.format('received_at')}, 'suspect', json_array(), 'raw', NULL, "
    f"'replayed', {_REPLAYED}) AS BLOB) END"
)
