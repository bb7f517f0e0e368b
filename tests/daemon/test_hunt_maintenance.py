"""Maintenance against what gateways do: backup folders that vanish, clocks set back."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agent.daemon.maintenance import Maintenance, MaintenancePolicy
from buffer.backup import list_backups
from buffer.outbox import Outbox


def test_a_backup_folder_that_cannot_be_listed_does_not_stop_pruning_and_checks(
    tmp_path: Path,
) -> None:
    # A USB stick that went away answers EIO; a path past NAME_MAX answers ENAMETOOLONG: both
    # are OSErrors from listing the folder, where the schedule decides whether a backup is due.
    policy = MaintenancePolicy(
        backup_dir=tmp_path / ("b" * 300), backup_keep=2, backup_interval=3600, retention_days=30
    )
    errors: list[tuple[str, str]] = []
    with Outbox.open(tmp_path / "outbox.db", "gw-1", disk_reserve_bytes=0) as box:
        maintenance = Maintenance(box, policy, on_error=lambda s, e: errors.append((s, e)))
        maintenance.run_due()
        report = maintenance.snapshot()
    assert report["last_prune"] and report["last_check"]
    assert "backup" in report["errors"] and [s for s, _ in errors] == ["maintenance backup"]


def test_a_backup_dated_in_the_future_after_the_clock_was_set_back_does_not_stop_backups(
    tmp_path: Path,
) -> None:
    policy = MaintenancePolicy(
        tmp_path / "backups", backup_keep=3, backup_interval=86400, retention_days=30
    )
    with Outbox.open(tmp_path / "outbox.db", "gw-1", disk_reserve_bytes=0) as box:
        Maintenance(box, policy).run_due()
        (first,) = list_backups(policy.backup_dir)
        # Written while the clock ran a year ahead (a bad RTC); NTP has since set it right.
        future = time.time() + 365 * 86400
        ahead = first.with_name(f"outbox-{time.gmtime(future).tm_year}1122T120000000000Z.db")
        first.rename(ahead)
        os.utime(ahead, (future, future))
        maintenance = Maintenance(box, policy)
        maintenance.run_due()
        assert len(list_backups(policy.backup_dir)) == 2
        maintenance.run_due()  # the new one is fresh by the corrected clock: no third
        assert len(list_backups(policy.backup_dir)) == 2
