"""Copies of the outbox are as private as the outbox: readable by the service, not by all."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer import Outbox
from buffer.backup import backup_rotating, backup_to, restore_file
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the default on Debian: new files 0644
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backups_and_a_restored_outbox_are_not_readable_by_every_user(
    outbox: Outbox, outbox_path: Path, tmp_path: Path, umask_022: None
) -> None:
    outbox.add_punches(punches(0, 10))
    manual = backup_to(outbox_path, tmp_path / "usb" / "outbox-copy.db")
    daily = backup_rotating(outbox_path, tmp_path / "backups", keep=2)
    assert _mode(manual) == 0o640
    assert _mode(daily) == 0o640
    outbox.close()
    restored = tmp_path / "restored" / "outbox.db"
    restored.parent.mkdir()
    restore_file(manual, restored, GATEWAY)
    assert _mode(restored) == 0o640
    with Outbox.open(restored, GATEWAY, disk_reserve_bytes=0) as again:
        assert again.stats().pending == 10
