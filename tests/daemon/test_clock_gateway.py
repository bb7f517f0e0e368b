"""The daemon's ``time-sync`` while the gateway clock is not set (booted in 1970, NTP not yet
answered): the terminals keep their own clocks, and the reply says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.daemon.device_state import set_clock
from config.errors import UsageError
from tests.drivers.zk.driver_support import TZ, driver_for, local_now, simulator


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
