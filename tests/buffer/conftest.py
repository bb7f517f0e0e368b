"""Fixtures for outbox tests: a real SQLite outbox in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer import Outbox

GATEWAY = "gw-test"


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    """Where the outbox of a test lives (its backups go to ``backups/`` beside it)."""
    return tmp_path / "state" / "outbox.db"


@pytest.fixture
def outbox(outbox_path: Path) -> Iterator[Outbox]:
    """A fresh outbox, closed after the test."""
    box = Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0)
    try:
        yield box
    finally:
        box.close()
