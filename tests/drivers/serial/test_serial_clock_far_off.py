"""A serial time clock whose clock is far off: its punches are kept, and flagged."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from drivers.base import Suspect
from drivers.serial import SerialDriver, SerialOptions, build_serial_driver
from tests.drivers.serial.helpers import take

KATHMANDU = ZoneInfo("Asia/Kathmandu")  # +05:45
RECEIVED = datetime(2026, 11, 22, 6, 15, tzinfo=UTC)  # 12:00 in Kathmandu
PATTERN = r"^(?P<employee>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$"


def _driver(**options: object) -> SerialDriver:
    driver = build_serial_driver(
        "clock-1",
        SerialOptions(url="loop://", pattern=PATTERN, **options),  # type: ignore[arg-type]
        KATHMANDU,
        clock=lambda: RECEIVED,
    )
    driver.open()
    return driver


def _punch_at(printed: str, **options: object) -> frozenset[Suspect]:
    driver = _driver(**options)
    try:
        assert driver.port is not None
        driver.port.write(f"1042,{printed},IN\r\n".encode())
        (punch,) = take(driver.live(5), 1)
    finally:
        driver.close()
    assert punch.employee == "1042" and punch.device_time.isoformat(" ") == printed
    return punch.suspect


@pytest.mark.parametrize(
    "printed", ["2100-01-01 08:00:00", "2038-01-19 03:14:08", "2026-11-22 12:05:00"]
)
def test_a_time_printed_ahead_of_its_arrival_is_flagged_clock_drift(printed: str) -> None:
    """The clock printed a time that had not come yet when the gateway received the line."""
    assert _punch_at(printed) == {Suspect.CLOCK_DRIFT}


@pytest.mark.parametrize(
    "printed",
    [
        "2026-11-22 12:00:00",  # as received
        "2026-11-22 12:00:59",  # a clock a little fast, within max_drift
        "2026-11-22 03:00:00",  # a stored punch replayed after a reconnect
    ],
)
def test_a_time_printed_before_its_arrival_or_within_max_drift_is_not_flagged(
    printed: str,
) -> None:
    assert _punch_at(printed) == frozenset()


def test_max_drift_sets_how_far_ahead_a_clock_may_be() -> None:
    assert _punch_at("2026-11-22 12:05:00", max_drift=600.0) == frozenset()
