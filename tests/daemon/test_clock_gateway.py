"""The daemon's ``time-sync`` while the gateway clock is not set (booted in 1970, NTP not yet
answered): the terminals keep their own clocks, and the reply says why."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.daemon.device_state import set_clock
from agent.daemon.device_worker import DeviceWorker
from agent.daemon.maintenance import Maintenance, MaintenancePolicy
from agent.wiring import zk_options
from buffer.outbox import Outbox
from config.errors import UsageError
from config.settings import ZkDeviceSettings
from drivers.backoff import Backoff
from drivers.zk import ZkDriver
from tests.drivers.zk.driver_support import TZ, driver_for, local_now, simulator
from tests.support.wait import wait_for


def test_time_sync_refuses_to_push_an_unset_gateway_clock_onto_a_terminal() -> None:
    with simulator() as sim:
        driver = driver_for(sim)
        driver.open()
        with pytest.raises(UsageError, match=r"gateway clock reads 1970-01-01.*NTP"):
            set_clock(driver, TZ, now=lambda: datetime(1970, 1, 1, 0, 2, tzinfo=UTC))
        driver.close()
        assert abs(sim.clock - local_now()) < timedelta(seconds=5), sim.clock


def test_time_sync_sets_the_terminal_from_a_plausible_gateway_clock() -> None:
    gateway = datetime.now(UTC) + timedelta(minutes=7)  # a gateway the terminal lags behind
    with simulator() as sim:
        driver = driver_for(sim)
        driver.open()
        result = set_clock(driver, TZ, now=lambda: gateway)
        driver.close()
        expected = local_now() + timedelta(minutes=7)
        assert abs(sim.clock - expected) < timedelta(seconds=5), sim.clock
    assert result["ok"] and result["set_to"].startswith(f"{expected:%Y-%m-%d}")


# 25 October 2026, 02:30 in Berlin happens twice; this is the second time (CET, UTC+1).
SECOND_0230 = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_the_status_drift_of_a_right_terminal_is_zero_in_the_repeated_dst_hour(
    tmp_path: Path,
) -> None:
    with (
        Outbox.open(tmp_path / "outbox.db", "gw-test", disk_reserve_bytes=0) as outbox,
        simulator() as sim,
    ):
        started = time.monotonic()
        gateway = lambda: SECOND_0230 + timedelta(seconds=time.monotonic() - started)  # noqa: E731
        sim.set_clock(datetime(2026, 10, 25, 2, 30))  # the terminal shows the right wall time
        device = ZkDeviceSettings(
            id="lobby-1", kind="zk", host="127.0.0.1", port=sim.port, poll_interval=1, timeout=2
        )
        worker = DeviceWorker(
            device,
            lambda: ZkDriver(device.id, zk_options(device), TZ, now=gateway),
            outbox,
            TZ,
            backoff=Backoff(0.01, 0.05),
        ).start()
        try:
            seen = wait_for(
                lambda: (s := worker.snapshot()).drift_s is not None and s,
                timeout=10,
                what="the terminal's drift",
            )
        finally:
            worker.stop()
            assert worker.join(10)
    assert abs(seen.drift_s) <= 2  # not -3600: the terminal shows what the wall clock shows


def test_an_unset_gateway_clock_shows_among_the_recent_errors_of_the_status(
    tmp_path: Path,
) -> None:
    policy = MaintenancePolicy(tmp_path / "b", 1, 3600, 30)
    errors: list[tuple[str, str]] = []
    wall = [86400.0 * 365]  # 1971: booted without RTC, NTP not answered yet
    with Outbox.open(tmp_path / "outbox.db", "gw-1", disk_reserve_bytes=0) as box:
        maintenance = Maintenance(
            box, policy, on_error=lambda s, e: errors.append((s, e)), wall=lambda: wall[0]
        )
        maintenance.run_due()
        maintenance.run_due()  # said once, not every minute
        wall[0] = time.time()  # NTP answered
        maintenance.run_due()
    assert [s for s, _ in errors] == ["gateway clock"]
    assert "1971" in errors[0][1] and "NTP" in errors[0][1]
    assert maintenance.snapshot()["clock"] == "ok"


def test_time_sync_without_force_leaves_a_terminal_days_off_and_says_to_check_the_gateway() -> None:
    """Against a gateway booted with its shutdown time the terminal is the right one: setting it
    back by days would stamp every punch until the next correction days early."""
    with simulator() as sim:
        sim.jump_clock(timedelta(days=2, hours=14))
        driver = driver_for(sim)
        driver.open()
        with pytest.raises(UsageError, match=r'ahead of the gateway.*timedatectl.*"force": true'):
            set_clock(driver, TZ, max_drift=60)
        assert sim.clock - local_now() > timedelta(days=2)
        result = set_clock(driver, TZ)  # forced: the backend checked the gateway
        driver.close()
        assert result["ok"]
        assert abs(sim.clock - local_now()) < timedelta(seconds=5), sim.clock


def test_the_time_sync_command_schema_takes_force() -> None:
    from agent.mqtt.contract import Contract

    contract = Contract.load()
    assert not contract.violations("command-time-sync", {"device_id": "lobby-1", "force": True})
    assert contract.violations("command-time-sync", {"force": "yes"})
