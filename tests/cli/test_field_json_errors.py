"""A script runs a command with --json against a broken site: stdout is still one JSON document.

These go through ``main()``, the error boundary a technician's shell meets (exit code, one line
on stderr), with real sockets on 127.0.0.1: a port where nothing listens, one that accepts and
never answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from agent.cli import main
from agent.localbroker import free_port
from drivers.zk.simulator import ZkSimulator
from tests.cli.conftest import write_config
from tests.support.users import other_user


def run_main(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """``punchgate ARGS`` through ``main()``: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["punchgate", *args])
    capsys.readouterr()  # drop what a simulator in this process logged before
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        structlog.reset_defaults()
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def zk(device_id: str, port: int, **extra: object) -> dict[str, object]:
    return {"id": device_id, "kind": "zk", "host": "127.0.0.1", "port": port, "timeout": 1, **extra}


@pytest.mark.parametrize("command", ["ping", "info", "time", "pull"])
def test_device_command_with_json_prints_the_error_as_json_when_nothing_listens(
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    config = make_config(devices=[zk("lobby-1", free_port())])
    code, out, err = run_main(
        ["devices", command, "lobby-1", "--json", "--config", str(config)], capsys, monkeypatch
    )
    assert code == 3
    data = json.loads(out)
    assert data["ok"] is False
    assert data["error"]["exit_code"] == 3
    assert data["error"]["type"] == "DeviceUnavailable"
    assert "refused the connection" in data["error"]["message"]
    assert data["error"]["message"] in err  # the same facts as the line a person reads


def test_ping_with_json_reports_a_silent_terminal_as_json_within_its_timeout(
    make_config: Callable[..., Path],
    silent_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(devices=[zk("lobby-1", silent_port)])
    code, out, _ = run_main(
        ["devices", "ping", "lobby-1", "--json", "--config", str(config)], capsys, monkeypatch
    )
    assert code == 3
    error = json.loads(out)["error"]
    assert "did not answer" in error["message"] and "within 1s" in error["message"]


def test_wrong_comm_key_with_json_names_the_comm_key(
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with ZkSimulator(serial="SIM-K", comm_key=4711) as sim:
        config = make_config(devices=[zk("lobby-1", sim.port, comm_key=1)])
        code, out, _ = run_main(
            ["devices", "time", "lobby-1", "--json", "--config", str(config)], capsys, monkeypatch
        )
    assert code == 3
    error = json.loads(out)["error"]
    assert error["type"] == "DeviceAuthError" and "comm key" in error["message"]


def test_config_problems_with_json_list_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[agent]\ngateway_id = "gw"\ncolour = "red"\n', encoding="utf-8")
    code, out, _ = run_main(["status", "--json", "--config", str(config)], capsys, monkeypatch)
    assert code == 2
    error = json.loads(out)["error"]
    assert error["type"] == "ConfigError"
    assert any("agent.colour" in p for p in error["problems"])


def test_unknown_device_with_json_is_a_json_usage_error(
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(devices=[zk("lobby-1", free_port())])
    code, out, _ = run_main(
        ["devices", "ping", "lobby-2", "--json", "--config", str(config)], capsys, monkeypatch
    )
    assert code == 2
    error = json.loads(out)["error"]
    assert error["type"] == "UsageError" and "lobby-1" in error["message"]


def test_without_json_stdout_stays_empty_on_errors(
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(devices=[zk("lobby-1", free_port())])
    code, out, err = run_main(
        ["devices", "ping", "lobby-1", "--config", str(config)], capsys, monkeypatch
    )
    assert (code, out) == (3, "")
    assert err.startswith("error: lobby-1 (127.0.0.1:") and "refused the connection" in err


def test_time_of_a_serial_device_says_it_has_no_clock_without_opening_its_port(
    make_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its port unplugged or not: the answer is that the command does not apply (exit 2)."""
    device = {"id": "dock-1", "kind": "serial", "url": str(tmp_path / "ttyUSB7")}
    config = make_config(devices=[{**device, "format": "em4100"}])
    code, out, err = run_main(
        ["devices", "time", "dock-1", "--json", "--config", str(config)], capsys, monkeypatch
    )
    assert code == 2, err
    assert "has no clock" in json.loads(out)["error"]["message"]


def test_a_bad_option_value_with_json_is_a_json_usage_error(
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(devices=[zk("lobby-1", free_port())])
    code, out, err = run_main(
        ["devices", "ping", "lobby-1", "--count", "0", "--json", "--config", str(config)],
        capsys,
        monkeypatch,
    )
    assert code == 2
    error = json.loads(out)["error"]
    assert error["exit_code"] == 2 and "--count" in error["message"]
    assert "--count" in err  # the usual usage message for a person stays


def test_a_command_without_sudo_on_a_private_config_says_to_use_sudo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'cannot read: Permission denied' alone sent technicians to fix a file that was fine."""
    root = Path(tempfile.mkdtemp(prefix="punchgate-private-"))
    try:
        root.chmod(0o755)
        config = write_config(root / "punchgate.toml", state_dir=root / "state")
        config.chmod(0o600 if os.geteuid() == 0 else 0)
        with other_user():
            code, out, err = run_main(
                ["status", "--json", "--config", str(config)], capsys, monkeypatch
            )
    finally:
        shutil.rmtree(root)
    assert code == 2
    assert "Permission denied" in err and "sudo" in err
    assert "sudo" in json.loads(out)["error"]["message"]


def test_a_refused_manual_punch_with_json_has_the_same_error_document(
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scripts read `error` from every failure; a refusal had only `problems`."""
    config = make_config(devices=[zk("lobby-1", free_port())])
    args = ["punch", "add", "-e", "1042", "-d", "lobby-1", "--at", "2999-01-01 08:00", "-r", "x"]
    code, out, _ = run_main([*args, "--json", "--config", str(config)], capsys, monkeypatch)
    assert code == 2
    data = json.loads(out)
    assert data["ok"] is False and data["problems"]  # the shape scripts already read
    assert data["error"]["exit_code"] == 2 and data["error"]["type"] == "UsageError"
    assert data["error"]["problems"] == data["problems"]
    assert "nothing stored" in data["error"]["message"]
