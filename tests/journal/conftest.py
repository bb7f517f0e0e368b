"""Captured log events (debug and up), for the journal tests that run a driver in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs


@pytest.fixture
def logs() -> Iterator[list[Any]]:
    """Every log event as a dict with its ``log_level``; build drivers after requesting this."""
    with capture_logs() as captured:
        yield captured
