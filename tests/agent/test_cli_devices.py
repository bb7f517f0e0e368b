"""``punchgate devices``: against the ZK simulator and a real outbox file."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app, main
from buffer import Outbox
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import simulator

runner = CliRunner()


@pytest.fixture
def sim() -> Iterator[ZkSimulator]:
    with simulator(users=4, records=20) as running:
        yield running


@pytest.fixture
def config(tmp_path: Path, sim: ZkSimulator) -> Path:
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
name = "Lobby"
host = "127.0.0.1"
port = {sim.port}
timeout = 2

[[devices]]
id = "gone-1"
kind = "zk"
host = "127.0.0.1"
port = 9
timeout = 1
""",
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str) -> tuple[int, str, str]:
    """Run ``punchgate`` through its real entry point (the one error boundary) in-process."""
    argv = sys.argv
    sys.argv = ["punchgate", *args, "--config", str(config)]
    out, err = sys.stdout, sys.stderr
    from io import StringIO

    sys.stdout, sys.stderr = StringIO(), StringIO()
    try:
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, sys.stdout.getvalue(), sys.stderr.getvalue()
    finally:
        sys.stdout, sys.stderr = out, err
        sys.argv = argv


def outbox(tmp_path: Path) -> Outbox:
    return Outbox.open(tmp_path / "state" / "outbox.db", "gw-test", disk_reserve_bytes=0)


def test_list_shows_configured_devices_without_contacting_them(config: Path) -> None:
    result = runner.invoke(app, ["devices", "list", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    devices = json.loads(result.stdout)["devices"]
    assert [d["id"] for d in devices] == ["lobby-1", "gone-1"]
    assert devices[1]["address"] == "127.0.0.1:9/tcp" and devices[0]["name"] == "Lobby"
    table = runner.invoke(app, ["devices", "list", "--config", str(config)])
    assert "lobby-1" in table.stdout and "Europe/Berlin" in table.stdout


def test_info_reports_identity_counts_and_clock(config: Path) -> None:
    result = runner.invoke(app, ["devices", "info", "lobby-1", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["serial"] == "SIM0001" and info["records"] == "20/100000"
    assert info["users"] == "4/10000" and info["firmware"].startswith("Ver 6.60")
    assert abs(info["drift_seconds"]) <= 2
    text = runner.invoke(app, ["devices", "info", "lobby-1", "--config", str(config)])
    assert "serial           SIM0001" in text.stdout


def test_ping_reports_round_trips(config: Path) -> None:
    result = runner.invoke(app, ["devices", "ping", "lobby-1", "-c", str(config), "--count", "2"])
    assert result.exit_code == 0, result.output
    assert "lobby-1 (127.0.0.1:" in result.stdout and "serial SIM0001" in result.stdout
    assert "round trip min/avg/max" in result.stdout


def test_pull_stores_everything_once_then_only_the_tail(
    config: Path, sim: ZkSimulator, tmp_path: Path
) -> None:
    code, out, err = run(config, "devices", "pull", "lobby-1", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (first["read"], first["stored"], first["full_read"]) == (20, 20, True)
    sim.punch(sim.users[0].user_id, state=1)
    sim.punch(sim.users[1].user_id)
    code, out, err = run(config, "devices", "pull", "lobby-1")
    assert code == 0, err
    assert "read 2 punch(es)" in out and "tail read" in out and "stored 2 new" in out
    with outbox(tmp_path) as ob:
        assert len(ob.list(device="lobby-1")) == 22
        assert ob.watermark("lobby-1")["count"] == 22  # type: ignore[index]
        assert ob.device_serial("lobby-1") == "SIM0001"
    code, out, _ = run(config, "devices", "pull", "lobby-1", "--full", "--json")
    again = json.loads(out)
    assert code == 0 and (again["read"], again["stored"], again["duplicates"]) == (22, 0, 22)


def test_pull_refuses_a_swapped_terminal_until_accepted(
    config: Path, sim: ZkSimulator, tmp_path: Path
) -> None:
    assert run(config, "devices", "pull", "lobby-1")[0] == 0
    sim.set_serial("NEW-77")
    sim.punch(sim.users[0].user_id)
    code, out, err = run(config, "devices", "pull", "lobby-1")
    assert code == 3 and out == ""
    assert "reports serial NEW-77 but was SIM0001" in err and "Traceback" not in err
    assert "--accept-serial NEW-77" in err
    with outbox(tmp_path) as ob:
        assert len(ob.list()) == 20  # nothing of the other terminal was mixed in
    code, out, err = run(config, "devices", "pull", "lobby-1", "--accept-serial", "NEW-77")
    assert code == 0, err
    with outbox(tmp_path) as ob:
        assert ob.device_serial("lobby-1") == "NEW-77"
        assert {p.device_serial for p in ob.list()} == {"SIM0001", "NEW-77"}


def test_unreachable_device_exits_3_with_the_classified_error(config: Path) -> None:
    code, out, err = run(config, "devices", "pull", "gone-1")
    assert code == 3 and out == ""
    last = err.strip().splitlines()[-1]  # earlier lines are logs (stderr, JSON when piped)
    assert last.startswith("error: gone-1 (127.0.0.1:9) refused the connection: check the port")


def test_unknown_device_is_a_usage_error(config: Path) -> None:
    code, _, err = run(config, "devices", "info", "nope")
    assert code == 2 and "unknown device 'nope'; configured devices: lobby-1, gone-1" in err


def test_time_shows_drift_and_set_corrects_it(config: Path, sim: ZkSimulator) -> None:
    sim.jump_clock(timedelta(minutes=-10))
    code, out, _ = run(config, "devices", "time", "lobby-1", "--json")
    assert code == 0 and -602 <= json.loads(out)["drift_seconds"] <= -598
    code, out, _ = run(config, "devices", "time", "lobby-1", "--set")
    assert code == 0 and "behind" in out and "set; now" in out
    code, out, _ = run(config, "devices", "time", "lobby-1", "--json")
    assert abs(json.loads(out)["drift_seconds"]) <= 2
