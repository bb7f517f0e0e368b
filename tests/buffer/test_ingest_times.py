"""The ingest path's fast UTC formatting writes exactly what ``isoformat`` writes."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from buffer.ingest import _utc_text


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
