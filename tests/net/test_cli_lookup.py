"""Technician commands on a terminal and a broker given by host name (``localhost``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.localbroker import LocalMosquitto
from tests.drivers.zk.driver_support import simulator


def _punchgate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from agent.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_ping_and_doctor_reach_a_terminal_and_a_broker_named_localhost(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    with simulator() as sim:
        config = tmp_path / "punchgate.toml"
        config.write_text(
            f"""
[agent]
gateway_id = "gw-test"
state_dir = "{tmp_path / "state"}"
timezone = "Europe/Berlin"

[outbox]
disk_reserve_mb = 0

[mqtt]
url = "mqtt://localhost:{broker.port}"

[[devices]]
id = "lobby-1"
kind = "zk"
host = "localhost"
port = {sim.port}
timeout = 2
""",
            encoding="utf-8",
        )
        ping = _punchgate("devices", "ping", "lobby-1", "-c", str(config), "--count", "1")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert f"lobby-1 (localhost:{sim.port}/tcp): reachable" in ping.stdout
        assert "serial SIM0001" in ping.stdout
        doctor = _punchgate("doctor", "--only", "broker", "-c", str(config))
    assert "localhost -> 127.0.0.1" in doctor.stdout, doctor.stdout + doctor.stderr
    assert "CONNACK" in doctor.stdout, doctor.stdout
