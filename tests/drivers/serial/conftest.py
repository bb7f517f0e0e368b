"""Fixtures for the serial driver tests: captured logs at debug level, a real pty line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from tests.drivers.serial.helpers import PtyLine


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every log event (debug and up) as a dict; build drivers after requesting this."""
    saved = structlog.get_config()
    capture = LogCapture()
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyLine]:
    """A real pty behind ``tmp_path/ttyUSB0``, as a /dev/serial/by-id/ link."""
    line = PtyLine(tmp_path / "ttyUSB0")
    try:
        yield line
    finally:
        line.close()
