"""``punchgate devices ...`` in a subprocess against terminals that stop answering."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.zk import protocol as p
from tests.drivers.zk.driver_support import simulator
from tests.silent.peers import SilentListener


def _config(tmp_path: Path, port: int, timeout: float) -> Path:
    path = tmp_path / "punchgate.toml"
    path.write_text(
        f"""
[agent]
gateway_id = "gw-test"
state_dir = "{tmp_path / "state"}"
timezone = "Europe/Berlin"

[outbox]
disk_reserve_mb = 0

[[devices]]
id = "lobby-1"
kind = "zk"
host = "127.0.0.1"
port = {port}
timeout = {timeout}
""",
        encoding="utf-8",
    )
    return path


def _punchgate(config: Path, *args: str) -> tuple[int, str, str, float]:
    argv = [sys.executable, "-m", "agent.cli", *args, "--config", str(config)]
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - began


def test_pull_from_a_terminal_that_never_answers_its_goodbye_reports_success(
    tmp_path: Path,
) -> None:
    """The punches were read and stored; only the EXIT at the end went unanswered (a firmware
    busy after a long read, a link that dropped at that moment). It exited 3, "did not answer
    EXIT", and the technician pulled again, believing nothing was stored."""
    release = threading.Event()

    def no_goodbye(usual: Any) -> Any:
        def answer(session: Any, packet: Any) -> Any:
            release.wait(10)  # bounded; released at the end of the test
            return usual(session, packet)

        return answer

    try:
        with simulator(users=2, records=5) as sim:
            sim.intercept(p.CMD_EXIT, no_goodbye)
            config = _config(tmp_path, sim.port, 1)
            code, out, err, _seconds = _punchgate(config, "devices", "pull", "lobby-1")
            release.set()
    finally:
        release.set()
    assert code == 0, err
    assert "stored 5 new" in out, out


@pytest.mark.slow  # four interpreter starts, about 12 s
def test_every_devices_command_ends_within_its_timeout_on_a_terminal_that_never_answers(
    tmp_path: Path,
) -> None:
    with SilentListener() as silent:
        config = _config(tmp_path, silent.port, 1)
        for command in ("ping", "info", "time", "pull"):
            code, _out, err, seconds = _punchgate(config, "devices", command, "lobby-1")
            assert code == 3, (command, err)
            assert "did not answer CONNECT within 1s" in err, (command, err)
            assert "check that the terminal is on and reachable" in err, (command, err)
            assert seconds < 1 + 5, (command, seconds)  # the timeout, and the interpreter start
