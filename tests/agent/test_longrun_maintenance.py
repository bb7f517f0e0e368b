"""Weeks of a backup that keeps failing: said once, not every minute, and never hiding others."""

from __future__ import annotations

from pathlib import Path

import structlog

from agent.daemon.maintenance import Maintenance, MaintenancePolicy
from buffer.backup import list_backups
from buffer.outbox import Outbox

TICKS = 30  # half an hour of the daemon's one-minute maintenance tick


def test_a_backup_failing_every_tick_is_logged_and_reported_once_and_its_end_once(
    tmp_path: Path,
) -> None:
    # backup_dir outside the state dir without ReadWritePaths= (operations.md): only the backup
    # task fails, at every tick, until the technician adds the drop-in.
    blocker = tmp_path / "read-only-mount"
    blocker.write_text("not a directory\n", encoding="utf-8")
    policy = MaintenancePolicy(
        backup_dir=blocker / "backups", backup_keep=2, backup_interval=3600, retention_days=30
    )
    reported: list[tuple[str, str]] = []
    with (
        Outbox.open(tmp_path / "outbox.db", "gw-1", disk_reserve_bytes=0) as box,
        structlog.testing.capture_logs() as logs,
    ):
        maintenance = Maintenance(box, policy, on_error=lambda s, e: reported.append((s, e)))
        for _ in range(TICKS):
            maintenance.run_due()
        assert "backup" in maintenance.snapshot()["errors"]  # the live status still shows it
        blocker.unlink()  # the drop-in is there: the folder can be created now
        for _ in range(3):
            maintenance.run_due()
        assert len(list_backups(policy.backup_dir)) == 1
    failed = [e for e in logs if e["event"] == "maintenance_failed"]
    assert len(failed) == 1, f"the same backup failure was logged {len(failed)} times"
    assert [s for s, _ in reported] == ["maintenance backup"], (
        "the status file's recent errors were filled with copies of one failure"
    )
    assert [e["task"] for e in logs if e["event"] == "maintenance_recovered"] == ["backup"]
    assert "backup" not in maintenance.snapshot()["errors"]
