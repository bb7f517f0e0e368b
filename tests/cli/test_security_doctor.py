"""The doctor's word on secrets kept in the config file itself (terminal comm keys, an inline
MQTT password): a config every local user can read gives them all away."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from agent.wiring import build_driver
from buffer.outbox import Outbox
from drivers.zk.simulator import ZkSimulator
from tests.cli.conftest import GATEWAY, cli

COMM_KEY = 987654


def never_builds(*_args: object) -> object:
    raise AssertionError("no terminal should be contacted")


def config_results(config: Path) -> dict[str, CheckResult]:
    report = run_doctor(config, build=never_builds, only=["config"], timeout=3)  # type: ignore[arg-type]
    return {r.name: r for r in report.results if r.family == "config"}


def zk(comm_key: int) -> dict[str, object]:
    return {"kind": "zk", "id": "lobby", "host": "127.0.0.1", "comm_key": comm_key}


@pytest.mark.parametrize(
    "secrets",
    [
        {"devices": [zk(COMM_KEY)]},
        {"mqtt": {"url": "mqtt://127.0.0.1:1", "username": "gw", "password": "Inl1nePw-99"}},
    ],
    ids=["comm_key", "inline password"],
)
def test_a_world_readable_config_holding_secrets_is_a_warning_to_chmod(
    tmp_path: Path, make_config: Callable[..., Path], secrets: dict[str, object]
) -> None:
    """A config written with an editor under umask 022 is 0644: every local user could read the
    terminals' comm keys (and connect to them to clear or enrol), yet the doctor said all ok."""
    (tmp_path / "state").mkdir()
    config = make_config(**secrets)
    config.chmod(0o644)
    check = config_results(config)["config secrets"]
    assert check.verdict == Verdict.WARN
    assert "every user" in check.detail and str(config) in check.detail
    assert check.next_step == f"chown root:punchgate {config} && chmod 640 {config}"
    # Named, never shown: neither the result nor --json carries the secret itself.
    outcome = cli("doctor", "--config", str(config), "--json")
    assert "config secrets" in outcome.stdout
    assert str(COMM_KEY) not in outcome.stdout + outcome.stderr
    assert "Inl1nePw-99" not in outcome.stdout + outcome.stderr
    config.chmod(0o640)  # the documented install
    assert config_results(config)["config secrets"].verdict == Verdict.OK


def test_a_readable_config_without_secrets_needs_no_chmod(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """No comm key, the password in a file of its own: nothing secret to protect in it."""
    (tmp_path / "state").mkdir()
    config = make_config(devices=[zk(0)])
    config.chmod(0o644)
    assert "config secrets" not in config_results(config)


@pytest.fixture
def swapped(tmp_path: Path, make_config: Callable[..., Path]) -> Iterator[tuple[Path, ZkSimulator]]:
    """A terminal last seen as SIM-A; the device now answering at its address is another."""
    with ZkSimulator(serial="SIM-A") as sim:
        with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
            outbox.add_punches([], device_id="lobby-1", device_serial="SIM-A")
        devices = [{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": sim.port}]
        yield make_config(devices=devices), sim


def test_the_accept_command_for_a_swapped_terminal_is_safe_to_paste_into_a_root_shell(
    swapped: tuple[Path, ZkSimulator],
) -> None:
    """The doctor's next step embeds the serial the device on the network reports: pasted with
    sudo as suggested, 'X; touch ...' ran the device's command as root."""
    config, sim = swapped
    marker = config.parent / "pwned"
    serial = f"X; touch {marker}"
    sim.set_serial(serial)
    report = run_doctor(config, build=build_driver, only=["devices"], timeout=2)
    check = next(r for r in report.results if r.name == "serial number")
    assert check.verdict == Verdict.FAIL
    command = check.next_step.partition("accept it: ")[2].partition("; otherwise")[0]
    assert command.startswith("punchgate devices pull lobby-1 --accept-serial ")
    # What a shell makes of the pasted line: one command, the serial one argument, as reported.
    # (No punchgate on this PATH: only what the shell would run besides it can happen.)
    subprocess.run(["/bin/bash", "-c", command], env={"PATH": "/usr/bin:/bin"}, timeout=10)
    assert not marker.exists()
    assert shlex.split(command)[-1] == serial


def test_control_characters_a_device_reports_reach_the_screen_escaped(
    swapped: tuple[Path, ZkSimulator],
) -> None:
    """An escape sequence in a serial (OSC 52 writes the technician's clipboard, others retitle
    or hide lines) was printed raw into the technician's terminal."""
    config, sim = swapped
    sim.set_serial("SIM-B\x1b]52;c;cm0gLXJmIH4K\x07")
    outcome = cli("doctor", "--config", str(config), "--only", "devices")
    assert "\x1b" not in outcome.stdout and "\x07" not in outcome.stdout
    assert "SIM-B\\x1b]52;c;cm0gLXJmIH4K\\x07" in outcome.stdout
