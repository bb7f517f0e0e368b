"""Technician commands never take punches from a serial line the running service reads.

A serial clock keeps no log: bytes discarded on the gateway are punches lost for good. Opening
the port (pyserial flushes the shared kernel input queue on open) threw away what was waiting
for the service's reader.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from agent.daemon.status_file import write_status
from agent.wiring import build_driver
from config import load_settings
from tests.cli.conftest import cli
from tests.drivers.serial.helpers import PtyLine


@pytest.fixture
def line(tmp_path: Path) -> Iterator[PtyLine]:
    with closing(PtyLine(tmp_path / "ttyUSB-clock")) as pty:
        yield pty


def clock_config(make_config: Callable[..., Path], line: PtyLine) -> Path:
    device = {"id": "dock-1", "kind": "serial", "url": str(line.link), "format": "wiegand-ascii"}
    return make_config(devices=[device])


def service_reads(config: Path) -> None:
    """The live status of a running service (this process) that reads dock-1."""
    write_status(
        load_settings(config).agent.state_dir,
        {
            "pid": os.getpid(),
            "updated_unix": time.time(),
            "interval_s": 15,
            "state": "running",
            "devices": [{"device_id": "dock-1", "state": "online"}],
        },
    )


@pytest.mark.parametrize(
    ("command", "says"),
    [("ping", "running service"), ("info", "running service"), ("pull", "no log")],
)
def test_devices_command_keeps_the_punch_waiting_for_the_running_service(
    make_config: Callable[..., Path], line: PtyLine, command: str, says: str
) -> None:
    config = clock_config(make_config, line)
    settings = load_settings(config)
    reader = build_driver(settings, settings.devices[0])  # the service's reader
    reader.open()
    try:
        service_reads(config)
        line.write(b"4521837\r\n")  # a card read, not yet read by the service
        outcome = cli("devices", command, "dock-1", "--config", str(config))
        punches = list(reader.live(1.0))
    finally:
        reader.close()
    assert [p.card for p in punches] == ["4521837"], outcome
    assert outcome.code == 2, outcome
    assert says in outcome.stderr, outcome


def test_devices_pull_on_a_serial_line_says_it_keeps_no_log(
    make_config: Callable[..., Path], line: PtyLine
) -> None:
    outcome = cli("devices", "pull", "dock-1", "--config", str(clock_config(make_config, line)))
    assert outcome.code == 2, outcome
    assert "no log" in outcome.stderr, outcome


def test_devices_ping_opens_a_serial_line_when_no_service_runs(
    make_config: Callable[..., Path], line: PtyLine
) -> None:
    outcome = cli("devices", "ping", "dock-1", "--config", str(clock_config(make_config, line)))
    assert outcome.code == 0, outcome
    assert "reachable" in outcome.stdout
