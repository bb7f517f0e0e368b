"""Device-local wall-clock time to aware UTC, DST-safe and honest about doubt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from drivers.base import Suspect

EARLIEST_PLAUSIBLE_YEAR = 2024  # a gateway without RTC boots in 1970 until NTP answers


def localize(naive: datetime, tz: ZoneInfo) -> tuple[datetime, int, frozenset[Suspect]]:
    """Return (UTC time, offset in minutes, flags) for a device-local wall-clock time.

    A time in a DST fold happened twice: the earlier (first) occurrence is chosen and the punch is
    flagged ``time_ambiguous``. A time in a DST gap never happened on a correct clock: it is read
    with the offset before the gap (as a clock that missed the change would show it) and flagged
    ``time_nonexistent``. Nothing is guessed silently.
    """
    if naive.tzinfo is not None:
        raise ValueError("localize() takes a naive device-local time")
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    flags: set[Suspect] = set()
    off0, off1 = first.utcoffset(), second.utcoffset()
    assert off0 is not None and off1 is not None
    if off0 != off1:
        # Either a fold (time exists twice) or a gap (time does not exist): round-trip tells.
        roundtrip = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        flags.add(Suspect.TIME_AMBIGUOUS if roundtrip == naive else Suspect.TIME_NONEXISTENT)
    utc = first.astimezone(UTC)
    offset = first.utcoffset() or timedelta(0)
    return utc, int(offset.total_seconds() // 60), frozenset(flags)


def to_device_local(utc: datetime, tz: ZoneInfo) -> datetime:
    """Naive device-local wall-clock time for an aware instant."""
    return utc.astimezone(tz).replace(tzinfo=None)


def gateway_clock_problem(now: datetime) -> str | None:
    """Why the gateway clock (aware ``now``) cannot be trusted, or None when it is plausible."""
    if now.astimezone(UTC).year < EARLIEST_PLAUSIBLE_YEAR:
        return (
            f"the gateway clock reads {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC, before "
            f"{EARLIEST_PLAUSIBLE_YEAR}: it is not set (no RTC, NTP not answered yet); enable "
            "NTP (timedatectl) and wait for it to sync"
        )
    return None
