"""Time texts for the ingest hot path: ISO texts with the date part formatted once per hour.

Punches of a batch share their hour, so "YYYY-MM-DDTHH:" comes from a small cache (bounded:
cleared past 4,096 hours) and "MM:SS" from a table; the rest is integer arithmetic. The texts
are exactly what ``datetime.isoformat()`` writes (tests/buffer/test_ingest_times.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from buffer.identity import _EPOCH as _EPOCH_NAIVE
from buffer.identity import _MS

_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
MIN_SEC = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))  # "MM:SS" by second


class _HourPrefixes(dict[int, str]):
    """``"YYYY-MM-DDTHH:"`` of an hour since the epoch, made on first use (bounded)."""

    def __missing__(self, hour: int) -> str:
        if len(self) > 4096:
            self.clear()
        text = (_EPOCH_UTC + timedelta(hours=hour)).isoformat()[:14]
        self[hour] = text
        return text


HOURS = _HourPrefixes()


def _day_hour(key: int) -> tuple[int, int, int, int]:
    """(year, month, day, hour) of a ``((year * 13 + month) * 32 + day) * 24 + hour`` key."""
    rest, hour = divmod(key, 24)
    rest, day = divmod(rest, 32)
    year, month = divmod(rest, 13)
    return year, month, day, hour


class _DayHourPrefixes(dict[int, str]):
    """``"YYYY-MM-DDTHH:"`` keyed by ``((year * 13 + month) * 32 + day) * 24 + hour`` (bounded)."""

    def __missing__(self, key: int) -> str:
        if len(self) > 4096:
            self.clear()
        year, month, day, hour = _day_hour(key)
        text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:"
        self[key] = text
        return text


DAY_HOURS = _DayHourPrefixes()


class _HourMillis(dict[int, int]):
    """Milliseconds since the epoch at the start of a ``_DayHourPrefixes`` key (bounded)."""

    def __missing__(self, key: int) -> int:
        if len(self) > 4096:
            self.clear()
        value = (datetime(*_day_hour(key)) - _EPOCH_NAIVE) // _MS
        self[key] = value
        return value


HOUR_MS = _HourMillis()


def utc_text(value: datetime) -> str:
    """``value.isoformat(timespec="microseconds")`` of a UTC time, at half the cost.

    Punches of a batch share their hour, so the date part is formatted once per hour.
    """
    hour, rest = divmod((value - _EPOCH_UTC) // _US, _HOUR_US)
    second, micro = divmod(rest, 1_000_000)
    return f"{HOURS[hour]}{MIN_SEC[second]}.{micro:06d}+00:00"
