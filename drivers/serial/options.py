"""The plain options a serial driver is built from (the agent copies them from the settings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class SerialOptions:
    """How to reach the port and read its frames; defaults match the config's defaults."""

    url: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    format: str = "lines"  # lines, em4100, wiegand-ascii
    pattern: str | None = None
    time_format: str = "%Y-%m-%d %H:%M:%S"
    encoding: str = "ascii"
    max_line: int = 512
    cards: Mapping[str, str] = field(default_factory=dict)
    roster_file: Path | None = None
    dedup_window: float = 3.0
    serial: str | None = None
    max_drift: float = 60.0  # seconds a printed time may be ahead of its arrival, unflagged
    timeout: float = 10.0  # open and write timeout
    read_timeout: float = 0.1  # how long one read waits; bounds how late live() returns
    batch_delay: float = 0.05  # after the first byte, wait this long and read the whole burst
    reconnect_min: float = 0.2  # first wait after the port disappears
    reconnect_max: float = 10.0  # the backoff never waits longer than this between attempts


_NAMES = frozenset(f.name for f in fields(SerialOptions))


def serial_options(values: Mapping[str, Any]) -> SerialOptions:
    """Options from a mapping such as ``SerialDeviceSettings.model_dump()``; other keys ignored."""
    chosen = {k: v for k, v in values.items() if k in _NAMES and v is not None}
    if "cards" in chosen:
        chosen["cards"] = dict(chosen["cards"])
    if "roster_file" in chosen:
        chosen["roster_file"] = Path(chosen["roster_file"])
    return SerialOptions(**chosen)
