"""Frames to punches: employees and cards, states, device time or receive time, double reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivers.base import PunchState, Source, Suspect, VerifyMethod
from drivers.serial.cards import CardTable, em4100_aliases
from drivers.serial.dedup import Deduplicator
from drivers.serial.parsers import Frame
from drivers.serial.punches import PunchBuilder, parse_state
from drivers.timeutil import localize

BERLIN = ZoneInfo("Europe/Berlin")
RECEIVED = datetime(2024, 5, 1, 6, 30, 15, tzinfo=UTC)  # 08:30:15 in Berlin (CEST)


def builder(fmt: str = "%Y-%m-%d %H:%M:%S", cards: dict[str, str] | None = None) -> PunchBuilder:
    return PunchBuilder("dock-1", "serial:dock-1", BERLIN, fmt, CardTable(cards), em4100_aliases)


@pytest.mark.parametrize(
    ("text", "state", "code"),
    [
        ("IN", PunchState.IN, None),
        ("out", PunchState.OUT, None),
        ("0", PunchState.IN, 0),
        ("1", PunchState.OUT, 1),
        ("Check-In", PunchState.IN, None),
        ("C/OUT", PunchState.OUT, None),
        ("EXIT", PunchState.OUT, None),
        ("entry", PunchState.IN, None),
        ("Break Out", PunchState.BREAK_OUT, None),
        ("break_in", PunchState.BREAK_IN, None),
        ("OT-IN", PunchState.OVERTIME_IN, None),
        ("5", PunchState.OVERTIME_OUT, 5),
    ],
)
def test_common_state_words_and_codes_map_to_states(
    text: str, state: PunchState, code: int | None
) -> None:
    assert parse_state(text) == (state, code, True)


def test_unknown_state_is_kept_as_unknown_and_flagged() -> None:
    assert parse_state("LUNCH?") == (PunchState.UNKNOWN, None, False)
    assert parse_state("9") == (PunchState.UNKNOWN, 9, False)
    assert parse_state(None) == (PunchState.UNKNOWN, None, True)
    punch = builder().build(Frame(raw=b"1,LUNCH?", employee="1", state="LUNCH?"), RECEIVED)
    assert punch.suspect == {Suspect.UNKNOWN_STATE} and punch.raw == b"1,LUNCH?"


def test_time_from_the_line_is_read_in_the_device_timezone() -> None:
    frame = Frame(raw=b"x", employee="1001", time="2024-01-15 08:00:00", state="IN")
    punch = builder().build(frame, RECEIVED)
    assert punch.device_time == datetime(2024, 1, 15, 8, 0)
    assert punch.time_utc == datetime(2024, 1, 15, 7, 0, tzinfo=UTC)
    assert punch.utc_offset_minutes == 60
    assert (punch.employee, punch.state, punch.source) == ("1001", PunchState.IN, Source.LIVE)
    assert punch.verify is VerifyMethod.OTHER and punch.suspect == frozenset() and punch.raw is None


def test_a_line_without_time_gets_the_receive_time() -> None:
    punch = builder().build(Frame(raw=b"x", employee="1001"), RECEIVED)
    assert punch.time_utc == RECEIVED
    assert punch.device_time == datetime(2024, 5, 1, 8, 30, 15)
    assert punch.utc_offset_minutes == 120


def test_a_time_in_the_dst_gap_is_flagged_not_guessed() -> None:
    frame = Frame(raw=b"x", employee="1", time="2024-03-31 02:30:00")
    assert builder().build(frame, RECEIVED).suspect == {Suspect.TIME_NONEXISTENT}


def test_an_impossible_time_keeps_the_punch_flagged_with_its_raw_line() -> None:
    frame = Frame(raw=b"1,2024-02-30 08:00:00", employee="1", time="2024-02-30 08:00:00")
    punch = builder().build(frame, RECEIVED)
    assert punch.suspect == {Suspect.TIME_INVALID}
    assert punch.time_utc is None and punch.raw == b"1,2024-02-30 08:00:00"
    assert punch.identity_fields()[2] == "raw:" + frame.raw.hex()


def test_a_clock_printing_only_the_time_means_the_nearest_day() -> None:
    just_after_midnight = datetime(2024, 5, 1, 22, 0, 5, tzinfo=UTC)  # 00:00:05 on 2 May
    late = builder("%H:%M:%S").build(
        Frame(raw=b"x", employee="1", time="23:59:58"), just_after_midnight
    )
    assert late.device_time == datetime(2024, 5, 1, 23, 59, 58)
    noon = builder("%H:%M").build(Frame(raw=b"x", employee="1", time="12:00"), RECEIVED)
    assert noon.device_time == datetime(2024, 5, 1, 12, 0)


def test_a_clock_printing_no_year_means_the_nearest_year() -> None:
    new_year = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 Jan 2025 in Berlin
    punch = builder("%d/%m %H:%M").build(
        Frame(raw=b"x", employee="1", time="31/12 23:59"), new_year
    )
    assert punch.device_time == datetime(2024, 12, 31, 23, 59)


def test_a_known_card_names_its_employee() -> None:
    punch = builder(cards={"0455884110": "1001"}).build(
        Frame(raw=b"x", card="0A1B2C3D4E"), RECEIVED
    )
    assert (punch.employee, punch.card, punch.verify) == ("1001", "0A1B2C3D4E", VerifyMethod.CARD)
    assert punch.suspect == frozenset()


def test_an_unknown_card_is_kept_without_employee_and_flagged() -> None:
    frame = Frame(raw=b"\x02...\x03", card="0000000001")
    punch = builder().build(frame, RECEIVED)
    assert punch.employee is None and punch.card == "0000000001"
    assert punch.suspect == {Suspect.UNKNOWN_CARD} and punch.raw == frame.raw
    assert punch.identity_fields()[1] == "card:0000000001"


def test_double_reads_within_the_window_are_dropped_and_the_window_slides() -> None:
    dedup = Deduplicator(window=3.0)
    assert not dedup.is_duplicate("A", 100.0)
    assert dedup.is_duplicate("A", 101.0)
    assert dedup.is_duplicate("A", 103.5)  # held on the reader: still the same presentation
    assert not dedup.is_duplicate("B", 103.5)
    assert not dedup.is_duplicate("A", 107.0)  # presented again after the window
    assert not Deduplicator(window=0).is_duplicate("A", 1.0)
    zero = Deduplicator(window=0)
    zero.is_duplicate("A", 1.0)
    assert not zero.is_duplicate("A", 1.0)


def test_dedup_memory_stays_bounded() -> None:
    dedup = Deduplicator(window=1e9, max_keys=100)
    for i in range(10_000):
        dedup.is_duplicate(i, float(i))
    assert len(dedup) == 100


iso_like = st.builds(
    lambda parts, between: "{}-{}-{}{}{}:{}:{}".format(*parts[:3], between, *parts[3:]),
    st.tuples(
        *(st.text(alphabet="0123456789 +-x", min_size=n, max_size=n) for n in (4, 2, 2, 2, 2, 2))
    ),
    st.sampled_from(" Tx"),  # fromisoformat takes any character here, strptime only a space
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(iso_like, st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))))
@example(text="2024-5-01  08:30:15")  # strptime takes a one-digit month and two spaces
@example(text="0001-01-1  00:00:00")  # ... and this one is before what UTC can hold in Berlin
@example(text="2024-05-01T08:30:15")  # fromisoformat takes a T (or any character), strptime not
@example(text="2024-05-01x08:30:15")
def test_the_fast_default_time_parser_agrees_with_strptime(text: str) -> None:
    try:
        expected: datetime | None = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
        localize(expected, BERLIN)  # year 1 in Berlin is before what UTC can hold: flagged too
    except (ValueError, OverflowError):
        expected = None
    frame = Frame(raw=text.encode(), employee="1", time=text)
    punch = builder().build(frame, RECEIVED)
    if expected is None:
        assert Suspect.TIME_INVALID in punch.suspect
    else:
        assert punch.device_time == expected and Suspect.TIME_INVALID not in punch.suspect


def test_a_time_utc_cannot_hold_is_flagged_not_raised() -> None:
    new_york = PunchBuilder(
        "dock-1", "serial:dock-1", ZoneInfo("America/New_York"), "%Y-%m-%d %H:%M:%S", CardTable()
    )
    frame = Frame(raw=b"1,9999-12-31 23:59:59", employee="1", time="9999-12-31 23:59:59")
    punch = new_york.build(frame, RECEIVED)
    assert punch.suspect == {Suspect.TIME_INVALID} and punch.time_utc is None


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(["%Y-%m-%d %H:%M:%S", "%H:%M", "%d/%m %H:%M", "%y%m%d%H%M%S", "%j %H"]),
    time=st.none() | st.text(max_size=30),
    state=st.none() | st.text(max_size=12),
    who=st.tuples(st.none() | st.text(min_size=1, max_size=12), st.text(max_size=12)),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati"]),
    received=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
)
def test_building_a_punch_never_raises_whatever_the_clock_printed(
    fmt: str,
    time: str | None,
    state: str | None,
    who: tuple[str | None, str],
    zone: str,
    received: datetime,
) -> None:
    employee, card = who
    table = CardTable({"1": "one"})
    punches = PunchBuilder("d", "serial:d", ZoneInfo(zone), fmt, table, em4100_aliases)
    frame = Frame(raw=b"x", employee=employee, card=card or None, time=time, state=state)
    punch = punches.build(frame, received.replace(tzinfo=UTC))
    assert (punch.time_utc is None) == (Suspect.TIME_INVALID in punch.suspect)
    assert punch.employee is not None or Suspect.UNKNOWN_CARD in punch.suspect or card == ""


def test_a_clock_printing_no_year_reads_the_leap_day_in_a_leap_year() -> None:
    leap_morning = datetime(2024, 2, 29, 7, 5, tzinfo=UTC)  # 08:05 on 29 Feb 2024 in Berlin
    punch = builder("%d/%m %H:%M").build(
        Frame(raw=b"x", employee="1", time="29/02 08:00"), leap_morning
    )
    assert punch.device_time == datetime(2024, 2, 29, 8, 0)
    assert punch.time_utc == datetime(2024, 2, 29, 7, 0, tzinfo=UTC)
    assert punch.suspect == frozenset()


def test_a_leap_day_without_year_in_a_common_year_is_flagged_not_moved() -> None:
    common_year = datetime(2025, 3, 1, 7, 5, tzinfo=UTC)
    punch = builder("%d/%m %H:%M").build(
        Frame(raw=b"29/02", employee="1", time="29/02 08:00"), common_year
    )
    assert Suspect.TIME_INVALID in punch.suspect
    assert punch.time_utc is None


@pytest.mark.parametrize("digits", ["9223372036854775808", "99999999999999999999999"])
def test_a_state_code_beyond_64_bits_is_an_unknown_state_the_outbox_can_store(
    digits: str,
) -> None:
    """SQLite and the backend hold 64-bit integers: a longer code would fail every store."""
    punch = builder().build(
        Frame(raw=b"1," + digits.encode(), employee="1", state=digits), RECEIVED
    )
    assert punch.state is PunchState.UNKNOWN
    assert punch.state_code is None
    assert Suspect.UNKNOWN_STATE in punch.suspect
    assert punch.raw == b"1," + digits.encode()


def test_the_largest_64_bit_state_code_is_kept_as_printed() -> None:
    punch = builder().build(Frame(raw=b"x", employee="1", state="9223372036854775807"), RECEIVED)
    assert punch.state_code == 2**63 - 1
    assert Suspect.UNKNOWN_STATE in punch.suspect


@settings(max_examples=200, deadline=None)
@given(
    received=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31)),
    minutes=st.integers(-150 * 24 * 60, 150 * 24 * 60),
)
@example(received=datetime(2024, 2, 29, 8, 0), minutes=0)  # leap day, no year printed
@example(received=datetime(2024, 3, 1, 0, 10), minutes=-20)  # 23:50 on the leap day
@example(received=datetime(2024, 12, 31, 23, 50), minutes=20)  # New Year's Eve, over midnight
@example(received=datetime(2025, 1, 1, 0, 10), minutes=-20)
def test_a_date_without_year_is_read_as_the_nearest_one(received: datetime, minutes: int) -> None:
    meant = (received + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    punch = builder("%d/%m %H:%M").build(
        Frame(raw=b"x", employee="1", time=f"{meant:%d/%m %H:%M}"), received.replace(tzinfo=UTC)
    )
    assert punch.device_time == meant
    assert Suspect.TIME_INVALID not in punch.suspect
