"""The SQL expression that writes one pending row's contract JSON (see buffer/payload.py).

Kept apart from the query so the expression can be tuned on its own: it is most of the cost of
reading a batch. ``JSON`` takes two bound parameters: the site name, then the highest seq
ever handed to the broker (rows up to it are ``replayed``).
"""

from __future__ import annotations

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
JSON = (
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
    "'replayed', json(CASE WHEN attempts > 0 OR seq <= ? THEN 'true' ELSE 'false' END)) AS BLOB) END"
)
