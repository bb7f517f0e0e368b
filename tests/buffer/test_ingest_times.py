"""The ingest path's fast UTC formatting writes exactly what ``isoformat`` writes."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from buffer.identity import punch_id
from buffer.ingest import Encoded
from buffer.timetext import utc_text as _utc_text
from drivers.base import Punch, PunchState, VerifyMethod


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_fast_utc_text_equals_isoformat_with_microseconds(value: datetime) -> None:
    aware = value.replace(tzinfo=UTC)
    assert _utc_text(aware) == aware.isoformat(timespec="microseconds")


def test_fast_utc_text_around_the_epoch_and_hour_boundaries() -> None:
    for value in (
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 0, 0, 1, tzinfo=UTC),
        datetime(2024, 3, 31, 1, 59, 59, tzinfo=UTC),
    ):
        assert _utc_text(value) == value.isoformat(timespec="microseconds")


@given(
    local=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    utc=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    employee=st.text(max_size=8),
    code=st.integers(min_value=-5, max_value=300),
)
def test_batch_encoder_writes_isoformat_texts_and_the_reference_id(
    local: datetime, utc: datetime, employee: str, code: int
) -> None:
    p = Punch(
        device_id="lobby-1",
        device_serial="SER-1",
        employee=employee,
        device_time=local,
        time_utc=utc.replace(tzinfo=UTC),
        utc_offset_minutes=0,
        state=PunchState.IN,
        state_code=code,
        verify=VerifyMethod.FINGERPRINT,
        verify_code=1,
    )
    batch = Encoded("gw-1", [p], "2026-03-02T06:00:00.000000+00:00")
    assert batch.ids == [punch_id("gw-1", p)]
    assert batch.rows[0][2] == local.isoformat()
    assert batch.utc == [utc.replace(tzinfo=UTC).isoformat(timespec="microseconds")]
