"""A technician restores a backup by hand after a recovery was cut short: the restore stands."""

from __future__ import annotations

from pathlib import Path

import pytest

from buffer import Outbox
from buffer.backup import list_backups
from tests.buffer.test_corruption import _smash_page_holding as smash_page_holding
from tests.crashpoints.outboxes import GATEWAY, MAX_STEPS, build, open_as_daemon
from tests.crashpoints.steps import fork_cut


@pytest.mark.parametrize("chosen", ["usb", "daily"])
def test_a_backup_restored_by_hand_after_a_cut_recovery_is_not_undone_by_the_next_start(
    tmp_path: Path, chosen: str
) -> None:
    path = tmp_path / "state" / "outbox.db"
    build(path)
    # The technician's own copy, on a USB stick: 50 punches more than the daily backup.
    usb = tmp_path / "usb" / "outbox-site.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.backup(usb)
    assert len(list_backups(path.parent / "backups")) == 1
    smash_page_holding(path, 300)
    # The start that found the damage is cut while it salvages (the marker is there).
    for at in range(1, MAX_STEPS):
        cut = fork_cut(lambda: Outbox.open(path, GATEWAY, disk_reserve_bytes=0).close(), at=at)
        assert cut.startswith("PAUSED")
        if "copyfile" in cut:
            break
    assert path.with_name("outbox.db.recovering").exists()

    daily = list_backups(path.parent / "backups")[0]
    Outbox.restore(usb if chosen == "usb" else daily, path, GATEWAY)  # chosen instead

    seen = open_as_daemon(path)
    rows = 400 if chosen == "usb" else 200
    assert len(seen.ids) == rows, f"the restored outbox was replaced: {seen}"
    assert seen.problems == ()
    # The damaged file gave out numbers up to 400 (the backend may have them): never again.
    assert seen.seq_counter >= 400, f"numbering goes on from {seen.seq_counter}"
    assert list(path.parent.glob("outbox.db.corrupt-*")), "the damaged file is kept"
