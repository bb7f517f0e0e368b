"""Backup rotation cut at each of its steps: the outbox untouched, every backup by its final
name whole, and the next rotation clears what the cut left."""

from __future__ import annotations

import os
import time
from pathlib import Path

from buffer.backup import backup_rotating, inspect_backup, list_backups
from tests.crashpoints.outboxes import build, each_cut, fresh_copy, open_as_daemon


def _rotate(path: Path) -> None:
    backup_rotating(path, path.parent / "backups", keep=2)


def test_a_backup_rotation_cut_anywhere_leaves_whole_backups_and_the_next_one_cleans_up(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    build(state / "outbox.db")
    for _ in range(2):
        _rotate(state / "outbox.db")
    assert len(list_backups(state / "backups")) == 2
    before = open_as_daemon(fresh_copy(state, tmp_path / "peek") / "outbox.db")

    path = tmp_path / "cut" / "outbox.db"
    cuts = 0
    for where in each_cut(state, path.parent, _rotate, ticks=8):
        cuts += 1
        backups = list_backups(path.parent / "backups")
        assert len(backups) >= 1, f"{where}: no backup left"
        for backup in backups:
            assert inspect_backup(backup).rows == 400, f"{where}: {backup.name}"
        assert open_as_daemon(path) == before, where
        _rotate(path)
        left = sorted(p.name for p in (path.parent / "backups").iterdir())
        assert len(left) == 2 and all(".partial" not in name for name in left), (where, left)
    assert cuts >= 4


def test_a_backup_cut_by_a_power_cut_is_cleaned_up_though_its_pid_lives_again_after_reboot(
    tmp_path: Path,
) -> None:
    """After the reboot the cut backup's pid belongs to another process (pids start over)."""
    state = tmp_path / "state"
    build(state / "outbox.db")
    backups = state / "backups"
    # The daemon (pid 1 here: alive, as the reused pid is) was writing the daily backup.
    cut = backups / "outbox-20260101T020000000000Z.db.partial-1"
    cut.write_bytes(b"SQLite format 3\x00" + b"\x00" * 4096)
    before_boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) - 3600
    os.utime(cut, (before_boot, before_boot))
    _rotate(state / "outbox.db")
    assert not cut.exists()  # else a full copy of the outbox stays on the card for ever
