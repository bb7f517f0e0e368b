"""Deterministic punches for outbox tests (plain values, no mocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod

BASE = datetime(2026, 3, 2, 7, 0)


def punch(
    n: int,
    *,
    device: str = "lobby-1",
    serial: str = "SER-LOBBY-1",
    source: Source = Source.DEVICE,
) -> Punch:
    """The n-th punch of a device: distinct content (hence a distinct id) for every n."""
    local = BASE + timedelta(seconds=37 * n)
    return Punch(
        device_id=device,
        device_serial=serial,
        employee=str(100 + n % 40),
        device_time=local,
        time_utc=(local - timedelta(hours=1)).replace(tzinfo=UTC),
        utc_offset_minutes=60,
        state=PunchState.IN if n % 2 == 0 else PunchState.OUT,
        state_code=n % 2,
        verify=VerifyMethod.FINGERPRINT,
        verify_code=1,
        source=source,
    )


def punches(start: int, count: int, **kwargs: object) -> list[Punch]:
    """``count`` consecutive punches from index ``start``."""
    return [punch(n, **kwargs) for n in range(start, start + count)]  # type: ignore[arg-type]


def invalid_time_punch(raw: bytes = b"\x01\x02\xff\xff") -> Punch:
    """A record whose date was impossible: no UTC time, raw bytes kept, flagged."""
    return Punch(
        device_id="lobby-1",
        device_serial="SER-LOBBY-1",
        employee="77",
        device_time=datetime(2000, 1, 1),
        time_utc=None,
        utc_offset_minutes=None,
        state=PunchState.UNKNOWN,
        state_code=9,
        suspect=frozenset({Suspect.TIME_INVALID, Suspect.UNKNOWN_STATE}),
        raw=raw,
    )
