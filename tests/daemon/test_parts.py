"""The daemon's small parts: status file, reload plan, shutdown sequence, maintenance, lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.daemon.device_state import DeviceSnapshot
from agent.daemon.instance_lock import InstanceLock
from agent.daemon.live_status import status_line
from agent.daemon.maintenance import Maintenance, MaintenancePolicy
from agent.daemon.reload import plan_reload
from agent.daemon.shutdown import ShutdownSequence
from agent.daemon.status_file import read_status, status_path, write_status
from buffer.backup import list_backups
from buffer.outbox import Outbox
from config.errors import UsageError
from config.loader import parse_settings
from tests.buffer.factory import punches
from tests.buffer.tamper import edit, query, shift_device_time


def _settings(devices: list[dict[str, Any]], **agent: Any) -> Any:
    data = {
        "agent": {"gateway_id": "gw-1", "state_dir": "/tmp/x", **agent},
        "devices": devices,
    }
    return parse_settings(data, "test.toml")


def _zk(device_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": device_id, "kind": "zk", "host": "10.0.0.1", **extra}


# -- status file -------------------------------------------------------------------------------


def test_a_fresh_status_from_a_live_pid_means_running(tmp_path: Path) -> None:
    write_status(tmp_path, {"pid": os.getpid(), "updated_unix": time.time(), "interval_s": 2})
    status = read_status(tmp_path)
    assert status is not None and status["running"] and status["fresh"] and status["pid_alive"]
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left behind


def test_a_stale_status_or_a_dead_pid_is_not_running(tmp_path: Path) -> None:
    write_status(tmp_path, {"pid": os.getpid(), "updated_unix": time.time(), "interval_s": 2})
    stale = read_status(tmp_path, now=time.time() + 60)
    assert stale is not None and not stale["fresh"] and not stale["running"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    write_status(tmp_path, {"pid": int(dead.stdout), "updated_unix": time.time()})
    gone = read_status(tmp_path)
    assert gone is not None and gone["fresh"] and not gone["pid_alive"] and not gone["running"]


def test_a_clean_stop_is_not_running_and_garbage_is_no_status(tmp_path: Path) -> None:
    write_status(tmp_path, {"pid": os.getpid(), "updated_unix": time.time(), "state": "stopped"})
    stopped = read_status(tmp_path)
    assert stopped is not None and not stopped["running"]
    status_path(tmp_path).write_text("{not json")
    assert read_status(tmp_path) is None
    assert read_status(tmp_path / "missing") is None


def test_the_systemd_status_line_summarises_devices_backlog_and_broker() -> None:
    snaps = [
        DeviceSnapshot("a-1", "zk", "", "online", "t"),
        DeviceSnapshot("b-1", "zk", "", "unreachable", "t"),
    ]
    assert status_line(snaps, 12, 34.6, True) == (
        "1/2 devices online (b-1 unreachable), backlog 12 (oldest 34s), broker connected"
    )
    assert status_line([], 0, None, False) == "no devices, backlog 0, broker disconnected"


# -- reload plan -------------------------------------------------------------------------------


def test_reload_plan_names_added_removed_and_changed_devices() -> None:
    old = _settings([_zk("a-1"), _zk("b-1"), _zk("c-1")])
    new = _settings([_zk("b-1"), _zk("c-1", port=4371), _zk("d-1"), _zk("e-1", enabled=False)])
    plan, _effective = plan_reload(old, new)
    assert plan.added == ["d-1"] and plan.removed == ["a-1"] and plan.changed == ["c-1"]
    assert plan.unchanged == ["b-1"] and not plan.mqtt_changed and plan.restart_required == []


def test_reload_keeps_restart_only_keys_and_restarts_devices_that_inherit_the_timezone() -> None:
    old = _settings([_zk("a-1"), _zk("b-1", timezone="Asia/Tokyo")])
    new = _settings(
        [_zk("a-1"), _zk("b-1", timezone="Asia/Tokyo")],
        gateway_id="gw-2",
        timezone="Europe/Berlin",
    )
    plan, effective = plan_reload(old, new)
    assert plan.restart_required == ["agent.gateway_id"]
    assert effective.agent.gateway_id == "gw-1" and effective.agent.timezone == "Europe/Berlin"
    assert plan.changed == ["a-1"] and plan.unchanged == ["b-1"]


# -- shutdown sequence -------------------------------------------------------------------------


def test_a_failing_shutdown_step_is_logged_and_the_next_steps_still_run() -> None:
    ran: list[tuple[str, float]] = []

    def step(name: str, result: str | None = None, fail: bool = False) -> Any:
        def run(budget: float) -> str | None:
            ran.append((name, budget))
            if fail:
                raise RuntimeError(f"{name} broke")
            return result

        return run

    sequence = ShutdownSequence()
    sequence.add("stop inputs", step("stop inputs", fail=True), share=0.5)
    sequence.add("flush", step("flush", result="3 punches stay"), share=0.5)
    sequence.add("close outbox", step("close outbox"))
    with structlog.testing.capture_logs() as logs:
        outcomes = sequence.run(10.0)
    assert [name for name, _ in ran] == ["stop inputs", "flush", "close outbox"]
    assert ran[0][1] == pytest.approx(5.0, abs=0.1)  # half of the whole budget
    assert [o.ok for o in outcomes] == [False, False, True]
    events = [e["event"] for e in logs]
    assert events == ["shutdown_step_failed", "shutdown_step_incomplete", "shutdown_step_done"]


# -- maintenance -------------------------------------------------------------------------------


class _BrokenPrune:
    """An outbox whose pruning fails: the other tasks must still run."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def backup_rotating(self, directory: Path, keep: int) -> Path:
        return self._outbox.backup_rotating(directory, keep)

    def prune(self, retention_days: float) -> int:
        raise OSError("disk I/O error")

    def check(self, full: bool = True) -> list[str]:
        return self._outbox.check(full)

    def clear_bad_marks(self) -> int:
        return self._outbox.clear_bad_marks()


def test_maintenance_backs_up_when_due_and_a_failing_task_does_not_stop_the_others(
    tmp_path: Path,
) -> None:
    policy = MaintenancePolicy(
        backup_dir=tmp_path / "backups", backup_keep=2, backup_interval=3600, retention_days=30
    )
    errors: list[tuple[str, str]] = []
    with Outbox.open(tmp_path / "outbox.db", "gw-1", disk_reserve_bytes=0) as box:
        maintenance = Maintenance(
            _BrokenPrune(box), policy, on_error=lambda s, e: errors.append((s, e))
        )
        maintenance.run_due()
        assert len(list_backups(policy.backup_dir)) == 1
        report = maintenance.snapshot()
        assert report["last_backup"] and report["last_check"] and report["problems"] == []
        assert report["errors"] == {"prune": "disk I/O error"}
        assert errors == [("maintenance prune", "disk I/O error")]
        maintenance.run_due()  # the newest backup is younger than the interval: none is due
        assert len(list_backups(policy.backup_dir)) == 1


def test_maintenance_reports_an_unset_gateway_clock(tmp_path: Path) -> None:
    policy = MaintenancePolicy(tmp_path / "b", 1, 3600, 30)
    with Outbox.open(tmp_path / "outbox.db", "gw-1", disk_reserve_bytes=0) as box:
        maintenance = Maintenance(box, policy, wall=lambda: 86400.0 * 365)  # 1971
        with structlog.testing.capture_logs() as logs:
            maintenance.run_due()
    assert maintenance.snapshot()["clock"] == "unset"
    assert [e for e in logs if e["event"] == "gateway_clock_unset"]


def _marked_outbox(path: Path) -> Outbox:
    """An outbox holding one terminal batch, marked wall_ok by the writer, one mark now wrong."""
    box = Outbox.open(path, "gw-1", disk_reserve_bytes=0)
    box.add_punches(punches(0, 5))
    assert {r["wall_ok"] for r in query(path, "SELECT wall_ok FROM punches")} == {1}
    shift_device_time(path, 3, timedelta(hours=1))  # a writer bug: local time no longer UTC + 1h
    return box


def test_maintenance_clears_wrong_wall_marks_and_says_it_is_a_bug(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with _marked_outbox(path) as box:
        before = query(path, "SELECT * FROM punches ORDER BY seq")
        maintenance = Maintenance(box, MaintenancePolicy(tmp_path / "b", 1, 3600, 30))
        with structlog.testing.capture_logs() as logs:
            maintenance.run_due()
        assert maintenance.snapshot()["problems"] == []
        assert box.check() == []
    after = query(path, "SELECT * FROM punches ORDER BY seq")
    assert [r["wall_ok"] for r in after] == [1, 1, None, 1, 1]
    assert [{**r, "wall_ok": None} for r in after] == [{**r, "wall_ok": None} for r in before]
    (repaired,) = [e for e in logs if e["event"] == "outbox_wall_marks_repaired"]
    assert repaired["log_level"] == "error" and repaired["cleared"] == 1
    assert "seq 3" in repaired["problems"][0] and "bug" in repaired["action"]


def test_maintenance_leaves_wrong_marks_alone_when_the_file_has_other_problems(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    with _marked_outbox(path) as box:
        edit(path, "UPDATE counters SET value = value + 5 WHERE name = 'pending'")
        maintenance = Maintenance(box, MaintenancePolicy(tmp_path / "b", 1, 3600, 30))
        with structlog.testing.capture_logs() as logs:
            maintenance.run_due()
        problems = maintenance.snapshot()["problems"]
    # Damage needs a person (and maybe a restore): nothing is changed behind their back.
    assert any("pending counter" in p for p in problems)
    assert [r["wall_ok"] for r in query(path, "SELECT wall_ok FROM punches")] == [1] * 5
    assert not [e for e in logs if e["event"] == "outbox_wall_marks_repaired"]
    assert [e for e in logs if e["event"] == "outbox_integrity_problems"]


# -- instance lock -----------------------------------------------------------------------------


def test_a_second_daemon_lock_on_one_state_dir_names_the_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path).acquire()
    try:
        with pytest.raises(UsageError, match=f"pid {os.getpid()}"):
            InstanceLock(tmp_path).acquire()
    finally:
        first.release()
    InstanceLock(tmp_path).acquire().release()  # free again once released
