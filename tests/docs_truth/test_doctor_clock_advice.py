"""The doctor's advice for a terminal clock works when a technician follows it."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.zk.simulator import ZkSimulator
from tests.cli.conftest import cli

TZ = "Europe/Berlin"


@pytest.fixture
def sim() -> Iterator[ZkSimulator]:
    with ZkSimulator(serial="SIM-CLOCK") as terminal:
        terminal.set_clock(datetime.now(ZoneInfo(TZ)).replace(tzinfo=None))
        yield terminal


def clock_check(config: Path) -> dict[str, str]:
    outcome = cli("doctor", "--only", "devices", "--json", "--config", str(config))
    return next(c for c in json.loads(outcome.stdout)["checks"] if c["check"] == "clock")


def suggested_command(next_step: str) -> list[str]:
    """The ``punchgate ...`` command a next step tells the technician to run (first one)."""
    start = next_step.index("punchgate devices time")
    words = shlex.split(next_step[start:].split(" (")[0].split(";")[0])
    return words[1:]


@pytest.mark.parametrize("ahead", [timedelta(hours=2, minutes=5), timedelta(hours=3)])
def test_doctor_advice_for_a_clock_hours_off_is_a_command_that_is_not_refused(
    sim: ZkSimulator, make_config: Callable[..., Path], ahead: timedelta
) -> None:
    sim.jump_clock(ahead)
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": sim.port}],
        timezone=TZ,
    )
    check = clock_check(config)
    assert check["verdict"] == "fail", check
    assert "clock_sync = true" not in check["next_step"], check  # it would refuse as well
    assert "timedatectl" in check["next_step"], check  # more than an hour: the gateway first
    outcome = cli(*suggested_command(check["next_step"]), "--config", str(config))
    assert outcome.code == 0, outcome
    assert clock_check(config)["verdict"] == "ok"


def test_doctor_advice_for_a_clock_minutes_off_sets_it(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    sim.jump_clock(timedelta(minutes=10))
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": sim.port}],
        timezone=TZ,
    )
    check = clock_check(config)
    assert check["verdict"] == "fail" and "--force" not in check["next_step"], check
    outcome = cli(*suggested_command(check["next_step"]), "--config", str(config))
    assert outcome.code == 0, outcome
    assert clock_check(config)["verdict"] == "ok"
