"""Fixtures shared by every suite: a real Mosquitto broker on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent.localbroker import LocalMosquitto, find_mosquitto
from config.errors import BrokerError


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """A private mosquitto on 127.0.0.1; stop()/start()/restart() simulate outages."""
    try:
        find_mosquitto()
    except BrokerError as exc:
        pytest.fail(str(exc))  # never skipped: CI installs it
    instance = LocalMosquitto(tmp_path / "mosquitto").start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults (a CLI run reconfigures it)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
