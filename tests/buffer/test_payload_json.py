"""The SQL-built contract JSON (buffer/payload_json.py), edge by edge, against two references.

Every row is written by the outbox's own writers and read back with ``next_payloads``; its JSON
must be byte for byte what the contract's reference encoder writes (``encode(punch_payload())``)
and what the previous expression (strftime() of time_utc plus the offset, kept below) wrote,
including which rows it left to the Python encoder (None).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.mqtt.contract import encode, punch_payload
from buffer import Outbox, StoredPunch
from drivers.base import Punch, PunchState, VerifyMethod
from drivers.timeutil import localize

SITE = 'Site "Nord" – 1'
EPOCH = datetime(1970, 1, 1)

# The expression as it was before unixepoch() and the offset table (commit 2728916).
_OLD_WALL = (
    "(strftime('%Y-%m-%dT%H:%M:%S', substr(time_utc, 1, 19), utc_offset_minutes || ' minutes')"
    " = substr(device_time, 1, 19) AND substr(time_utc, 20, 7) = "
    "CASE WHEN length(device_time) = 19 THEN '.000000' ELSE substr(device_time, 20) END)"
)
_OLD_OFFSET = (
    "CASE WHEN utc_offset_minutes < 0 THEN '-' ELSE '+' END"
    " || substr('0' || (abs(utc_offset_minutes) / 60), -2)"
    " || ':' || substr('0' || (abs(utc_offset_minutes) % 60), -2)"
)
_OLD_KNOWN = "(time_utc IS NULL OR utc_offset_minutes IS NULL)"
PREVIOUS_JSON = (
    "CASE WHEN suspect IS NULL AND raw IS NULL AND "
    f"({_OLD_KNOWN} OR {_OLD_WALL}) THEN CAST(json_object("
    "'id', id, 'seq', seq, 'gateway_id', gateway_id, 'site', ?, 'device_id', device_id, "
    "'device_serial', device_serial, 'employee', employee, 'card', card, "
    "'device_time', device_time, "
    f"'time', CASE WHEN {_OLD_KNOWN} THEN NULL ELSE device_time || {_OLD_OFFSET} END, "
    "'time_utc', replace(time_utc, '.000000+', '+'), 'utc_offset_minutes', utc_offset_minutes, "
    "'state', state, 'state_code', state_code, 'verify', verify, 'verify_code', verify_code, "
    "'source', source, 'kind', kind, 'void_of', void_of, 'operator', operator, "
    "'reason', reason, 'entered_at', replace(entered_at, '.000000+', '+'), "
    "'received_at', replace(received_at, '.000000+', '+'), 'suspect', json_array(), "
    "'raw', NULL, "
    "'replayed', json(CASE WHEN attempts > 0 OR seq <= ? THEN 'true' ELSE 'false' END)) "
    "AS BLOB) END"
)


def _punch(
    local: datetime, offset: int | None, skew: timedelta = timedelta(0), employee: str = "7"
) -> Punch:
    """A terminal punch at wall time ``local``; its UTC time is off by ``skew`` when given."""
    utc = None if offset is None else (local - timedelta(minutes=offset) + skew)
    return Punch(
        device_id="lobby-1",
        device_serial="SER-1",
        employee=employee,
        device_time=local,
        time_utc=None if utc is None else utc.replace(tzinfo=UTC),
        utc_offset_minutes=offset,
        state=PunchState.IN,
        state_code=0,
        verify=VerifyMethod.FINGERPRINT,
        verify_code=1,
    )


def _previous(path: Path, after_seq: int) -> dict[int, bytes | None]:
    """What the previous expression writes for the rows after ``after_seq``."""
    conn = sqlite3.connect(path)
    try:
        sql = f"SELECT seq, {PREVIOUS_JSON} FROM punches WHERE seq > ? ORDER BY seq"  # noqa: S608
        return dict(conn.execute(sql, (SITE, -1, after_seq)).fetchall())
    finally:
        conn.close()


def _wall_ok(path: Path, after_seq: int = 0) -> dict[int, int | None]:
    """Each row's ``wall_ok`` mark (1: its writer found device_time == time_utc + offset)."""
    conn = sqlite3.connect(path)
    try:
        sql = "SELECT seq, wall_ok FROM punches WHERE seq > ?"
        return dict(conn.execute(sql, (after_seq,)).fetchall())
    finally:
        conn.close()


def _check(outbox: Outbox, after_seq: int = 0) -> dict[int, bytes | None]:
    """Assert every row after ``after_seq`` is exact; return its JSON (None: left to Python).

    Also that every row marked ``wall_ok`` is what the mark says, to the microsecond.
    """
    payloads = outbox.next_payloads(100_000, after_seq=after_seq, site=SITE)
    previous = _previous(outbox.path, after_seq)
    stored = {r.seq: r for r in outbox.next_batch(100_000, after_seq=after_seq)}
    assert [seq for seq, _id, _json in payloads] == sorted(stored) == sorted(previous)
    for seq, mark in _wall_ok(outbox.path, after_seq).items():
        row = stored[seq]
        if mark is not None:
            assert mark == 1 and row.time_utc is not None and row.utc_offset_minutes is not None
            wall = row.time_utc + timedelta(minutes=row.utc_offset_minutes)
            assert wall.replace(tzinfo=None) == row.device_time and not row.suspect, row
    out = {}
    for seq, _id, text in payloads:
        if text is None and previous[seq] is not None and _in_last_half_millisecond(stored[seq]):
            # unixepoch() rounds these to year 10000, which it refuses: left to the encoder.
            assert previous[seq] == encode(punch_payload(stored[seq], SITE))
        else:
            assert text == previous[seq], (stored[seq], text, previous[seq])
        if text is not None:
            assert text == encode(punch_payload(stored[seq], SITE)), stored[seq]
        out[seq] = text
    return out


_LAST_HALF_MS = datetime(9999, 12, 31, 23, 59, 59, 999_500)


def _in_last_half_millisecond(row: StoredPunch) -> bool:
    """Device or UTC time from 9999-12-31T23:59:59.9995 on (SQLite rounds to milliseconds)."""
    utc = None if row.time_utc is None else row.time_utc.replace(tzinfo=None)
    return any(t is not None and t >= _LAST_HALF_MS for t in (row.device_time, utc))


def _max_seq(outbox: Outbox) -> int:
    conn = sqlite3.connect(outbox.path)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM punches").fetchone()[0])
    finally:
        conn.close()


# -- SQLite's unixepoch(), which the wall-time check rests on ----------------------------------


def _unixepoch(texts: list[str]) -> list[int | None]:
    conn = sqlite3.connect(":memory:")
    try:
        rows = conn.execute("SELECT unixepoch(value) FROM json_each(?)", (json.dumps(texts),))
        return [r[0] for r in rows]
    finally:
        conn.close()


def test_unixepoch_counts_days_as_python_does_from_year_1_to_9999() -> None:
    # Every first of a month, and every day of years around leap and century rules. (Every day
    # of 1..9999 was checked once too: 3,652,059 dates, no difference; too slow for each run.)
    days = [date(y, m, 1) for y in range(1, 10000) for m in range(1, 13)]
    for year in (1, 2, 4, 100, 400, 1582, 1600, 1900, 1969, 1970, 2000, 2024, 2100, 9999):
        first = date(year, 1, 1).toordinal()
        days.extend(date.fromordinal(n) for n in range(first, date(year, 12, 31).toordinal() + 1))
    texts = [d.isoformat() + "T00:00:00" for d in days]
    expected = [(d - EPOCH.date()).days * 86400 for d in days]
    assert _unixepoch(texts) == expected


def test_unixepoch_counts_every_second_of_a_day_and_truncates_the_fraction() -> None:
    day = datetime(1969, 12, 31)  # before the epoch: negative values truncate the same way
    seconds = [day + timedelta(seconds=s) for s in range(86400)]
    assert _unixepoch([t.isoformat() for t in seconds]) == [
        int((t - EPOCH).total_seconds()) for t in seconds
    ]


def test_equal_fractions_add_the_same_whole_second_at_every_second_of_a_minute() -> None:
    # SQLite rounds the fraction to milliseconds before truncating: .999500 and up read as the
    # next second. Whatever the seconds digits, equal fraction texts do the same, so they cancel
    # in device_time - time_utc. Fractions below .999 never reach the next second.
    fractions = [*range(0, 1000, 7), *range(499_000, 501_000), *range(999_000, 1_000_000)]
    base = datetime(2024, 3, 31, 1, 59)
    texts = [
        f"{(base + timedelta(seconds=s)).isoformat()}.{f:06d}" for s in range(60) for f in fractions
    ]
    epochs = _unixepoch(texts)
    start = int((base - EPOCH).total_seconds())
    i = 0
    for s in range(60):
        for f in fractions:
            assert epochs[i] == start + s + (1 if f >= 999_500 else 0), texts[i]
            i += 1


# -- rows through the outbox's writers ---------------------------------------------------------


def test_every_utc_offset_a_tzinfo_allows_is_written_as_isoformat_does(outbox: Outbox) -> None:
    wall = datetime(2024, 6, 1, 9, 0, 0)
    offsets = range(-1439, 1440)
    outbox.add_punches([_punch(wall, m, employee=str(m)) for m in offsets])
    texts = _check(outbox)
    assert all(t is not None for t in texts.values())
    times = [json.loads(t or b"")["time"] for _s, t in sorted(texts.items())]
    assert times[0] == "2024-06-01T09:00:00-23:59" and times[-1] == "2024-06-01T09:00:00+23:59"
    assert times[1439 - 330] == "2024-06-01T09:00:00-05:30"


def test_offsets_no_tzinfo_allows_are_written_as_before(outbox: Outbox) -> None:
    # No writer stores these (the reference cannot even build the zone): same JSON as before.
    wall = datetime(2024, 6, 1, 9, 0, 0)
    outbox.add_punches([_punch(wall, m, employee=str(m)) for m in (-5000, -1440, 1440, 2000)])
    previous = _previous(outbox.path, 0)
    payloads = outbox.next_payloads(100, site=SITE)
    assert [text for _s, _i, text in payloads] == [previous[s] for s, _i, _t in payloads]
    assert json.loads(payloads[2][2] or b"")["time"] == "2024-06-01T09:00:00+24:00"


EDGE_TIMES = [
    datetime(1, 1, 2, 0, 0),  # year 1 (offsets up to a day back stay in year 1)
    datetime(999, 12, 31, 23, 59, 59, 999_999),  # a three-digit year, zero-padded
    datetime(1582, 10, 15, 12, 30, 1, 500_000),  # the Gregorian reform: no gap in Python
    datetime(1900, 2, 28, 23, 30, 59),  # 1900 is not a leap year
    datetime(1969, 12, 31, 23, 59, 59, 999_500),  # just before the epoch, fraction rounds up
    datetime(1970, 1, 1, 0, 0, 0, 1),
    datetime(2000, 2, 29, 0, 0, 59, 999_499),
    datetime(2024, 3, 31, 2, 30, 0, 500),
    datetime(9999, 12, 31, 23, 59, 59, 999_999),  # the last microsecond a datetime can hold
]
SKEWS = [
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(microseconds=-1),
    timedelta(microseconds=500),
    timedelta(milliseconds=1),
    timedelta(seconds=1),
    timedelta(seconds=-1),
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=-59),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=-1),
    timedelta(days=400),
]


def test_wall_times_match_only_to_the_microsecond_at_calendar_edges(outbox: Outbox) -> None:
    rows, matched = [], []
    for n, local in enumerate(EDGE_TIMES):
        for offset in (-720, -61, 0, 45, 840):
            for skew in SKEWS:
                try:
                    punch = _punch(local, offset, skew, employee=f"{n}.{offset}.{skew}")
                except OverflowError:
                    continue  # a UTC time before year 1 or after 9999: no datetime to store
                rows.append(punch)
                matched.append(skew == timedelta(0) and local < _LAST_HALF_MS)
    outbox.add_punches(rows, received_at=datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC))
    texts = _check(outbox)
    assert [t is not None for _s, t in sorted(texts.items())] == matched
    first = json.loads(next(t for t in texts.values() if t is not None))
    assert first["received_at"] == "2024-06-01T12:00:00+00:00"  # zero fraction dropped


def test_a_terminal_batch_whose_wall_times_all_match_is_marked_and_written_by_sql(
    outbox: Outbox,
) -> None:
    # Edge times and offsets, every row's device time exactly its UTC time + offset.
    rows = []
    for n, local in enumerate(EDGE_TIMES):
        for offset in (-720, -61, 0, 45, 840):
            try:
                rows.append(_punch(local, offset, employee=f"{n}.{offset}"))
            except OverflowError:
                continue
    outbox.add_punches(rows)
    assert set(_wall_ok(outbox.path).values()) == {1}
    texts = _check(outbox)
    assert len(texts) == len(rows) and all(t is not None for t in texts.values())
    # The last half millisecond of year 9999, which the SQL check cannot read, too.
    last = b'"device_time":"9999-12-31T23:59:59.999999"'
    assert any(last in t for t in texts.values() if t is not None)


@pytest.mark.parametrize("skew", [timedelta(microseconds=1), timedelta(hours=1)])
def test_one_row_off_its_wall_time_leaves_the_whole_batch_to_the_drains_check(
    outbox: Outbox, skew: timedelta
) -> None:
    wall = datetime(2024, 6, 1, 9, 0, 0, 250)
    rows = [_punch(wall + timedelta(seconds=n), 120, employee=str(n)) for n in range(5)]
    rows[3] = _punch(wall + timedelta(seconds=3), 120, skew, employee="3")
    outbox.add_punches(rows)
    # A manual punch and a batch from two terminals are never marked either.
    outbox.add_manual(rows[0], operator="tech-anna", reason="terminal offline")
    door = replace(_punch(wall, 120, employee="b"), device_id="door")
    assert outbox.add_punches([_punch(wall, 120, employee="a"), door]).inserted == 2
    assert set(_wall_ok(outbox.path).values()) == {None}
    texts = _check(outbox)
    assert [seq for seq, t in sorted(texts.items()) if t is None] == [4]


def test_rows_without_utc_time_or_offset_and_manual_rows_are_exact(outbox: Outbox) -> None:
    wall = datetime(2024, 6, 1, 9, 0, 0, 120)
    outbox.add_punches(
        [
            _punch(wall, None, employee="none"),
            _punch(wall, 60, employee="both"),
            _punch(wall, 60, employee="utc"),
        ]
    )
    conn = sqlite3.connect(outbox.path)
    with conn:  # a UTC time without an offset: no writer stores it, the JSON has no local time
        conn.execute("UPDATE punches SET utc_offset_minutes = NULL WHERE employee = 'utc'")
    conn.close()
    manual = outbox.add_manual(
        _punch(datetime(2024, 6, 1, 10, 0), 120, employee="8"),
        operator="tech-anna",
        reason="terminal offline",
        entered_at=datetime(2024, 6, 1, 10, 5, tzinfo=UTC),
    )
    outbox.add_void(manual.id, operator="tech-anna", reason="entered twice")
    texts = _check(outbox)
    assert all(t is not None for t in texts.values())
    bodies = {(b["employee"], b["kind"]): b for b in (json.loads(t or b"") for t in texts.values())}
    assert bodies["none", "punch"]["time"] is None and bodies["utc", "punch"]["time"] is None
    assert bodies["both", "punch"]["time"] == "2024-06-01T09:00:00.000120+01:00"
    assert bodies["8", "punch"]["entered_at"] == "2024-06-01T10:05:00+00:00"
    assert bodies["8", "void"]["void_of"] == manual.id


ZONES = [
    "Europe/Berlin",
    "America/Santiago",  # DST changes at midnight
    "America/St_Johns",  # -03:30 / -02:30
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Apia",  # skipped 2011-12-30 entirely
]


def test_dst_gaps_and_folds_in_real_zones_are_left_to_the_encoder(outbox: Outbox) -> None:
    rows = []
    for name in ZONES:
        zone = ZoneInfo(name)
        for year in (2011, 2024):
            # Every 15 minutes over each transition day (found by a change of offset at noon).
            day = datetime(year, 1, 1)
            while day.year == year:
                noon = day.replace(hour=12)
                if localize(noon, zone)[1] != localize(noon + timedelta(days=1), zone)[1]:
                    for q in range(4 * 48):
                        local = day + timedelta(minutes=15 * q, seconds=q % 3)
                        utc, offset, flags = localize(local, zone)
                        rows.append(
                            Punch(
                                device_id="lobby-1",
                                device_serial="SER-1",
                                employee=f"{name}-{q}",
                                device_time=local,
                                time_utc=utc,
                                utc_offset_minutes=offset,
                                suspect=flags,
                            )
                        )
                day += timedelta(days=1)
    outbox.add_punches(rows)
    texts = _check(outbox)
    stored = {r.seq: r for r in outbox.next_batch(100_000)}
    left = {seq for seq, text in texts.items() if text is None}
    assert left == {seq for seq, r in stored.items() if r.suspect}
    assert any(r.suspect == ["time_nonexistent"] for r in stored.values())
    assert any(r.suspect == ["time_ambiguous"] for r in stored.values())


@pytest.mark.parametrize(
    "text",
    [
        "2024-06-01 09:00:00",  # a space: read by unixepoch() and by Python, not isoformat()
        "2024-06-01 09:00:00.250000",
        "2024-06-01T09:00Z  ",  # read by unixepoch() only
        "2024-06-01TT09:00  ",
        "2024-06-01T09:00   ",
        "2460462.87500000000",  # a julian day number
        "09:00:00           ",
        "2024-06-01T09:00:00+00:00",  # aware (no writer stores one)
        "2024-06-01T09:00:00.000000",  # a zero fraction isoformat() never writes
    ],
)
def test_device_times_not_in_isoformat_shape_are_judged_as_before(
    outbox: Outbox, text: str
) -> None:
    """Texts no writer stores: the JSON (or None) is what the previous expression wrote."""
    outbox.add_punches([_punch(datetime(2024, 6, 1, 9, 0, 0, 250_000), 0, employee="1")])
    outbox.add_punches([_punch(datetime(2024, 6, 1, 9, 0), 0, employee="2")])
    conn = sqlite3.connect(outbox.path)
    with conn:  # the writer's wall_ok mark was about the old text: an edit takes it away
        conn.execute("UPDATE punches SET device_time = ?, wall_ok = NULL", (text,))
    conn.close()
    previous = _previous(outbox.path, 0)
    payloads = outbox.next_payloads(100, site=SITE)
    assert [t for _s, _i, t in payloads] == [previous[s] for s, _i, _t in payloads]
    if "T09:00:00" not in text or len(text) not in (19, 26):
        assert [t for _s, _i, t in payloads] == [None, None]


_micros = st.sampled_from([0, 0, 0, 1, 500, 499_999, 500_000, 999_499, 999_500, 999_999]) | (
    st.integers(0, 999_999)
)
_skews = st.sampled_from(SKEWS[1:]) | st.integers(-86_400_000_000, 86_400_000_000).map(
    lambda us: timedelta(microseconds=us)
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cases=st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
            _micros,
            st.integers(-1439, 1439),
            st.none() | _skews,
        ),
        min_size=1,
        max_size=40,
    )
)
def test_sql_json_is_the_reference_json_for_any_device_time_offset_and_skew(
    outbox: Outbox, cases: list[tuple[datetime, int, int, timedelta | None]]
) -> None:
    """Rows accumulate in one outbox across examples: each example checks its own rows."""
    after = _max_seq(outbox)
    rows, matched = [], []
    for n, (local, micro, offset, skew) in enumerate(cases):
        local = local.replace(microsecond=micro)
        try:
            rows.append(_punch(local, offset, skew or timedelta(0), employee=f"{after}-{n}"))
        except OverflowError:
            continue
        matched.append(not skew)
    outbox.add_punches(rows)
    texts = _check(outbox, after_seq=after)
    assert [t is not None for _s, t in sorted(texts.items())] == matched
