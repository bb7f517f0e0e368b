"""Serial time clocks and card readers on any pyserial URL (``kind = "serial"``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from drivers.serial.driver import SerialDriver, SerialStats, utc_now
from drivers.serial.options import SerialOptions, serial_options

__all__ = [
    "SerialDriver",
    "SerialOptions",
    "SerialStats",
    "build_serial_driver",
    "serial_options",
]


def build_serial_driver(
    device_id: str,
    options: SerialOptions,
    tz: ZoneInfo,
    clock: Callable[[], datetime] = utc_now,
) -> SerialDriver:
    """The driver for one serial device; ``clock`` gives the receive time (aware UTC)."""
    return SerialDriver(device_id, options, tz, clock=clock)
