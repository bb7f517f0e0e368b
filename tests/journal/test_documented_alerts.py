"""operations.md: the events worth alerting on each carry an ``action`` saying what to do."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.daemon.maintenance import Maintenance, MaintenancePolicy
from buffer.outbox import Outbox
from drivers.zk import ZkDriver, ZkOptions
from tests.drivers.zk.driver_support import TZ, simulator


def test_maintenance_failed_carries_an_action(tmp_path: Path, logs: list[Any]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    policy = MaintenancePolicy(
        backup_dir=blocker / "backups", backup_keep=2, backup_interval=3600, retention_days=30
    )
    with Outbox.open(tmp_path / "outbox.db", "gw-1", disk_reserve_bytes=0) as box:
        Maintenance(box, policy).run_due()
    (failed,) = [e for e in logs if e["event"] == "maintenance_failed"]
    assert "retried" in failed["action"] and "backup_dir" in failed["error"], failed


def test_zk_clock_sync_refused_carries_an_action(logs: list[Any]) -> None:
    with simulator(users=1, records=1) as sim:
        sim.jump_clock(timedelta(hours=3))
        options = ZkOptions(host="127.0.0.1", port=sim.port, timeout=2.0, clock_sync=True)
        driver = ZkDriver("lobby-1", options, TZ)
        driver.open()
        driver.read_new(None)
        driver.close()
    (refused,) = [e for e in logs if e["event"] == "zk_clock_sync_refused"]
    assert "--force" in refused["action"], refused
