"""Backups on a failing SD card: what a power cut leaves behind, a backup path taken by a file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from buffer import Outbox
from buffer.backup import inspect_backup, list_backups
from config.errors import OutboxError
from tests.buffer.factory import punches
from tests.cli.conftest import GATEWAY, cli, write_config


def _dead_pid() -> int:
    """The pid of a process that has ended (as one a power cut stopped)."""
    child = subprocess.Popen(["true"])
    child.wait(timeout=10)
    return child.pid


def test_a_daily_backup_cut_by_a_power_cut_is_cleaned_up_by_the_next_rotation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "outbox.db"
    backups = path.parent / "backups"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 50))
        first = box.backup_rotating(backups, keep=2)
        # Yesterday's backup was cut by a power cut: its copy kept its own (dated) name.
        cut = backups / f"outbox-20260101T020000000000Z.db.partial-{_dead_pid()}"
        cut.write_bytes(b"SQLite format 3\x00" + b"\x00" * 4096)
        running = backups / f"outbox-20260102T020000000000Z.db.partial-{os.getpid()}"
        running.write_bytes(b"SQLite format 3\x00")  # a backup of a live process: left alone
        mine = backups / "notes.partial-1"  # not a name punchgate writes: left alone
        mine.write_text("a technician's file")
        newest = box.backup_rotating(backups, keep=2)
    assert not cut.exists()  # else each power cut during a backup kept a full copy forever
    assert running.exists() and mine.exists()
    assert list_backups(backups) == [newest, first]
    assert inspect_backup(newest).rows == 50


def test_a_file_where_the_backup_directory_should_be_is_named_with_what_to_do(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "outbox.db"
    config = write_config(tmp_path / "punchgate.toml", state_dir=path.parent)
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 5))
        (path.parent / "backups").write_text("left by a clean-up script")
        with pytest.raises(OutboxError) as info:
            box.backup_rotating(path.parent / "backups", keep=2)
    message = str(info.value)
    assert str(path.parent / "backups") in message and "not a directory" in message
    assert "outbox.backup_dir" in message
    done = cli("outbox", "backup", "--config", str(config))
    assert done.code == OutboxError.exit_code
    assert "not a directory" in done.stderr and "unexpected" not in done.stderr
    assert (path.parent / "backups").read_text() == "left by a clean-up script"
