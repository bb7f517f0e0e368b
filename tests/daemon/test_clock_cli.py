"""``punchgate devices time --set`` against a terminal days away from the gateway clock: one of
the two clocks is wrong (often the gateway, booted with its shutdown time before NTP answered),
so the technician is asked to check first instead of the terminal being moved by days."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from drivers.zk.simulator import ZkSimulator
from tests.agent.test_cli_devices import config, run, sim
from tests.drivers.zk.driver_support import local_now

__all__ = ["config", "sim"]  # the fixtures: a simulator and a config naming it as lobby-1


def test_set_refuses_to_move_a_terminal_by_days_without_force(
    config: Path, sim: ZkSimulator
) -> None:
    sim.jump_clock(timedelta(days=2, hours=14))
    code, out, err = run(config, "devices", "time", "lobby-1", "--set")
    assert code == 2, (out, err)
    last = err.strip().splitlines()[-1]
    # The terminal's clock has whole seconds: 2 days 14 hours reads as that or a second less.
    assert re.search(r"(2d14h|2d13h59m59s) ahead of the gateway", last), last
    assert "timedatectl" in last and "--force" in last
    assert abs(sim.clock - local_now() - timedelta(days=2, hours=14)) < timedelta(seconds=5)


def test_set_with_force_moves_a_terminal_by_days(config: Path, sim: ZkSimulator) -> None:
    sim.jump_clock(timedelta(days=-400))  # a terminal whose battery died
    code, out, err = run(config, "devices", "time", "lobby-1", "--set", "--force", "--json")
    assert code == 0, err
    assert json.loads(out)["set"] and abs(sim.clock - local_now()) < timedelta(seconds=5)


def test_set_still_corrects_an_hour_without_force(config: Path, sim: ZkSimulator) -> None:
    sim.jump_clock(timedelta(hours=-1))  # a terminal that missed the DST change
    code, _, err = run(config, "devices", "time", "lobby-1", "--set")
    assert code == 0, err
    assert abs(sim.clock - local_now()) < timedelta(seconds=5)
