"""A terminal's clock in the journal: the drift warning says what to do, one event one shape."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drivers.zk import ZkDriver, ZkOptions
from tests.drivers.zk.driver_support import TZ, simulator


def _driver(port: int, **options: Any) -> ZkDriver:
    return ZkDriver("lobby-1", ZkOptions(host="127.0.0.1", port=port, timeout=2.0, **options), TZ)


def _keys(logs: list[Any], name: str) -> set[tuple[str, ...]]:
    return {tuple(sorted(set(e) - {"event", "log_level"})) for e in logs if e["event"] == name}


def test_a_drifting_clock_warning_says_what_to_do(logs: list[Any]) -> None:
    with simulator(users=1, records=1) as sim:
        sim.jump_clock(timedelta(minutes=20))
        driver = _driver(sim.port, max_drift=60)
        driver.open()
        driver.read_new(None)
        driver.close()
    (drift,) = [e for e in logs if e["event"] == "zk_clock_drift"]
    assert drift["log_level"] == "warning"
    assert "time-sync" in drift["action"] and "clock_sync" in drift["action"], drift


def test_zk_clock_set_has_the_same_keys_by_command_and_by_clock_sync(logs: list[Any]) -> None:
    with simulator(users=1, records=1) as sim:
        sim.jump_clock(timedelta(minutes=5))
        auto = _driver(sim.port, max_drift=60, clock_sync=True)
        auto.open()
        auto.read_new(None)  # clock_sync sets it
        auto.close()
        sim.jump_clock(timedelta(minutes=5))
        manual = _driver(sim.port, max_drift=60)
        manual.open()
        manual.set_time()  # what the time-sync command does
        manual.close()
    shapes = _keys(logs, "zk_clock_set")
    assert len([e for e in logs if e["event"] == "zk_clock_set"]) == 2
    assert len(shapes) == 1, shapes
