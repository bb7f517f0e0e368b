"""Durability at the edges: clocks that jump, huge retention, restores and their seq numbers."""

from __future__ import annotations

import math
import resource
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buffer import Outbox, inspect_backup, list_backups
from buffer.recovery import SEQ_GAP_AFTER_LOSS
from config.errors import OutboxError
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def test_rotation_keeps_the_backup_just_written_after_the_clock_went_back(
    outbox: Outbox, tmp_path: Path
) -> None:
    directory = tmp_path / "backups"
    # Written while the clock ran a year ahead (no RTC, a bad NTP answer), since corrected.
    ahead = outbox.backup(directory / "outbox-20990101T000000000000Z.db")
    outbox.add_punches(punches(0, 10))
    made = outbox.backup_rotating(directory, keep=1)
    assert made.is_file()
    assert inspect_backup(made).rows == 10
    # The newest backup (the one recovery restores) is the one holding the newest data.
    assert list_backups(directory) == [made]
    assert not ahead.exists()


@pytest.mark.parametrize("days", [1_000_000, 10**12, math.inf])
def test_prune_with_a_retention_longer_than_the_calendar_keeps_everything(
    outbox: Outbox, days: float
) -> None:
    outbox.add_punches(punches(0, 5))
    outbox.mark_delivered([r.id for r in outbox.next_batch(5)])
    assert outbox.prune(days, now=datetime(2026, 11, 22, tzinfo=UTC)) == 0
    assert outbox.stats().delivered == 5


def test_prune_refuses_a_retention_that_is_not_a_number(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 5))
    outbox.mark_delivered([r.id for r in outbox.next_batch(5)])
    with pytest.raises(ValueError, match="retention_days"):
        outbox.prune(math.nan, now=datetime(2026, 11, 22, tzinfo=UTC))
    assert outbox.stats().delivered == 5


def test_rotation_keeps_the_new_backup_beside_odd_names_that_look_like_ours(
    outbox: Outbox, tmp_path: Path
) -> None:
    directory = tmp_path / "backups"
    directory.mkdir()
    odd = [directory / "outbox-99991399T999999999999Z.db", directory / "outbox-x.db"]
    for path in odd:
        path.write_text("a technician's file, not a backup")
    last = outbox.backup(directory / "outbox-99991231T235959999999Z.db")
    outbox.add_punches(punches(0, 3))
    made = outbox.backup_rotating(directory, keep=1)
    assert inspect_backup(made).rows == 3
    assert all(path.exists() for path in odd)  # not names we write: never deleted
    assert not last.exists()
    again = outbox.backup_rotating(directory, keep=1)
    assert again.is_file() and not made.exists()


def _backed_up(path: Path, backup: Path) -> Path:
    """An outbox at ``path`` with 10 punches, backed up to ``backup``."""
    with Outbox.open(path, GATEWAY) as box:
        box.add_punches(punches(0, 10))
        return box.backup(backup)


def test_restore_never_reuses_a_seq_the_replaced_outbox_had_given_out(
    outbox_path: Path, tmp_path: Path
) -> None:
    backup = _backed_up(outbox_path, tmp_path / "site.db")
    with Outbox.open(outbox_path, GATEWAY) as box:
        box.add_punches(punches(10, 5))
        sent = box.next_batch(15)
        box.mark_delivered([r.id for r in sent])  # the backend has seen seq 11..15
    Outbox.restore(backup, outbox_path)
    with Outbox.open(outbox_path, GATEWAY) as box:
        box.add_punches(punches(100, 2))
        seqs = sorted(r.seq for r in box.list() if r.seq > 10)
        assert box.check() == []
    assert seqs and min(seqs) > 15, seqs


def test_restore_without_the_old_outbox_jumps_the_seq_like_a_recovery(
    outbox_path: Path, tmp_path: Path
) -> None:
    backup = _backed_up(outbox_path, tmp_path / "usb-stick.db")
    target = tmp_path / "new-gateway" / "outbox.db"  # a replacement gateway, empty disk
    Outbox.restore(backup, target)
    with Outbox.open(target, GATEWAY) as box:
        box.add_punches(punches(100, 1))
        newest = max(r.seq for r in box.list())
        assert box.check() == []
    assert newest > 10 + SEQ_GAP_AFTER_LOSS


def test_restore_from_a_file_whose_commits_are_still_in_its_wal_keeps_them(
    tmp_path: Path,
) -> None:
    # The file a restore kept as outbox.db.replaced-<time> after the service died hard: its
    # newest commits are in the WAL moved along with it. Restoring it back must keep them.
    live = tmp_path / "live" / "outbox.db"
    old = tmp_path / "outbox.db.replaced-20261122T120000Z"
    with Outbox.open(live, GATEWAY) as box:
        box.add_punches(punches(0, 10))
        for suffix in ("", "-wal", "-shm"):  # a snapshot of the files as a power cut leaves them
            Path(f"{old}{suffix}").write_bytes(Path(f"{live}{suffix}").read_bytes())
    assert inspect_backup(old).rows == 10
    target = tmp_path / "state" / "outbox.db"
    Outbox.restore(old, target)
    assert inspect_backup(target).rows == 10
    with Outbox.open(target, GATEWAY) as box:
        assert len(box.list()) == 10 and box.check() == []


def test_a_failed_restore_leaves_the_outbox_in_place(outbox_path: Path, tmp_path: Path) -> None:
    backup = _backed_up(outbox_path, tmp_path / "site.db")
    with Outbox.open(outbox_path, GATEWAY) as box:
        box.add_punches(punches(10, 5))
    # The copy cannot be written (a file-size limit, as a full disk would): Python ignores
    # SIGXFSZ, so the write fails with EFBIG instead of killing the test process.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))
    try:
        with pytest.raises(OutboxError):
            Outbox.restore(backup, outbox_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    with Outbox.open(outbox_path, GATEWAY) as box:
        assert len(box.list()) == 15
    assert not list(outbox_path.parent.glob("outbox.db.replaced-*"))
