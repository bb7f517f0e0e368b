"""The compiled ingest encoder (buffer/_encode.c) gives exactly what the Python path gives.

Both encoders run on the same generated batches and every attribute of the result is compared:
ids, row values (texts and objects), UTC texts, the wall-time check and the row shapes. Batches
the C encoder does not take (a second terminal, a suspect or card punch, odd types) must come
out the same too: it hands them back to the Python path.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from buffer import ingest
from buffer.identity import punch_id
from buffer.ingest import Encoded
from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod

GATEWAY = "gw-ü-1"  # non-ASCII: the hashed text is UTF-8
_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)
_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))


def _same(batch: list[Punch], gateway: str = GATEWAY) -> Encoded:
    fast = Encoded(gateway, batch, "2026-11-22T10:00:00.000000+00:00", compiled=True)
    slow = Encoded(gateway, batch, "2026-11-22T10:00:00.000000+00:00", compiled=False)
    for name in Encoded.__slots__:
        assert getattr(fast, name) == getattr(slow, name), name
    # Equal and of the same types: SQLite stores what it is given (an int is not a float).
    assert [[type(v) for v in row] for row in fast.rows] == [
        [type(v) for v in row] for row in slow.rows
    ]
    return fast


@st.composite
def ordinary(draw: st.DrawFn, serial: str = "SN-1", device: str = "lobby-1") -> Punch:
    """A terminal's ordinary punch: the shape the compiled encoder takes."""
    local = draw(_times)
    offset = draw(st.integers(-1440, 1440))
    try:
        utc = (local - timedelta(minutes=offset)).replace(tzinfo=UTC)
    except OverflowError:
        utc = local.replace(tzinfo=UTC)
    if draw(st.integers(0, 9)) == 0:  # a UTC time that is not the wall time minus the offset
        utc = utc.replace(microsecond=draw(st.integers(0, 999_999)))
    return Punch(
        device_id=device,
        device_serial=serial,
        employee=draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)),
        device_time=local,
        time_utc=utc,
        utc_offset_minutes=offset,
        state=draw(st.sampled_from(list(PunchState))),
        state_code=draw(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 5)),
        verify=draw(st.sampled_from(list(VerifyMethod))),
        verify_code=draw(st.integers(0, 255)),
        source=Source.DEVICE,
    )


def test_the_compiled_encoder_is_built() -> None:
    """scripts/setup.sh installs a compiler; without one the build silently skips it."""
    assert ingest.COMPILED, "buffer/_encode.c was not built: is gcc or python3-dev missing?"


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(ordinary(), min_size=1, max_size=20), gateway=_text)
@example(batch=[], gateway="gw").via("an empty batch")
def test_ordinary_batches_encode_exactly_as_the_python_path(
    batch: list[Punch], gateway: str
) -> None:
    encoded = _same(batch, gateway)
    assert encoded.ids == [punch_id(gateway, p) for p in batch]


@pytest.mark.parametrize(
    "change",
    [
        {"device_id": "gate-2"},
        {"device_serial": "SN-2"},
        {"source": Source.LIVE},
        {"suspect": frozenset({Suspect.TIME_INVALID}), "raw": b"\x00\x01"},
        {"card": "0012345"},
        {"raw": b"\x01"},
        {"employee": None, "card": "42"},
        {"employee": "bad\udc80"},  # a lone surrogate: both paths refuse it the same way
        {"time_utc": None},
        {"time_utc": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
        {"device_time": datetime(2026, 1, 1, tzinfo=UTC)},
        {"utc_offset_minutes": None},
        {"utc_offset_minutes": 2**70},
        {"utc_offset_minutes": 60.0},
        {"state_code": None},
        {"state_code": True},
        {"state_code": 2**64},
        {"verify_code": None},
        {"state": "in"},  # not a PunchState: both paths fail the same way
    ],
    ids=repr,
)
def test_a_batch_the_compiled_encoder_does_not_take_comes_out_the_same(
    change: dict[str, object],
) -> None:
    base = Punch(
        device_id="lobby-1",
        device_serial="SN-1",
        employee="7",
        device_time=datetime(2026, 3, 29, 2, 30, 0, 250_000),
        time_utc=datetime(2026, 3, 29, 1, 30, 0, 250_000, tzinfo=UTC),
        utc_offset_minutes=60,
        state=PunchState.IN,
        state_code=0,
        verify=VerifyMethod.FINGERPRINT,
        verify_code=1,
    )
    odd = replace(base, **change)  # type: ignore[arg-type]
    batch = [base, odd, replace(base, employee="8")]
    try:
        expected: Encoded | BaseException = Encoded(GATEWAY, batch, "r", compiled=False)
    except (UnicodeError, TypeError, OverflowError, AttributeError) as exc:
        expected = exc
    if isinstance(expected, BaseException):
        with pytest.raises(type(expected)):
            Encoded(GATEWAY, batch, "r", compiled=True)
    else:
        _same(batch)


def test_times_at_the_ends_of_the_calendar_and_before_1970_match() -> None:
    times = [
        datetime(1, 1, 1, 0, 0, 0),
        datetime(1, 1, 1, 0, 0, 0, 1),
        datetime(1969, 12, 31, 23, 59, 59, 999_999),
        datetime(1970, 1, 1, 0, 0, 0, 999),
        datetime(2000, 2, 29, 12, 0, 0),
        datetime(2100, 3, 1, 0, 0, 0, 1000),
        datetime(9999, 12, 31, 23, 59, 59, 999_999),
    ]
    batch = [
        Punch(
            device_id="lobby-1",
            device_serial="SN-1",
            employee=str(n),
            device_time=t,
            time_utc=t.replace(tzinfo=UTC),
            utc_offset_minutes=0,
            state=PunchState.OUT,
            state_code=1,
            verify=VerifyMethod.CARD,
            verify_code=2,
        )
        for n, t in enumerate(times)
    ]
    encoded = _same(batch)
    assert encoded.ids[0].startswith("00000000-0000-8")  # before 1970: the time part is 0
    assert encoded.wall_ok


def test_a_long_employee_id_hashes_past_one_block() -> None:
    """Hashed texts longer than SHA-256's 64-byte block, and than the encoder's stack buffer."""
    batch = [
        Punch(
            device_id="lobby-1",
            device_serial="S" * 40,
            employee="é" * n,
            device_time=datetime(2026, 1, 1, 8, 0, n % 60),
            time_utc=datetime(2026, 1, 1, 8, 0, n % 60, tzinfo=UTC),
            utc_offset_minutes=0,
            state=PunchState.IN,
            state_code=0,
            verify=VerifyMethod.FACE,
            verify_code=15,
        )
        for n in (0, 1, 9, 10, 40, 300)
    ]
    _same(batch)
