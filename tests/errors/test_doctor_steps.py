"""The doctor's verdict on a state directory the service cannot use: a failure, not "start the
service once", and a next step a technician can type, naming the config file."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_field_json_errors import run_main


def doctor_checks(
    config: Path,
    family: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *extra: str,
) -> tuple[int, dict[str, dict[str, Any]]]:
    """``punchgate doctor --only FAMILY --json``: (exit code, checks by name)."""
    args = ["doctor", "--only", family, "--json", *extra, "--config", str(config)]
    code, out, _err = run_main(args, capsys, monkeypatch)
    return code, {c["check"]: c for c in json.loads(out)["checks"]}


def state_dir_check(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, dict[str, Any]]:
    code, checks = doctor_checks(config, "config", capsys, monkeypatch)
    return code, checks["state directory"]


def test_doctor_fails_a_state_dir_under_a_regular_file_and_says_where_to_point_it(
    tmp_path: Path,
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "punchgate-state"
    blocker.write_text("a file where a directory belongs\n")
    config = make_config(state_dir=blocker / "sub")
    code, check = state_dir_check(config, capsys, monkeypatch)
    assert code == 6 and check["verdict"] == "fail", check
    assert f"{blocker} is a file" in check["detail"], check
    assert f"agent.state_dir in {config}" in check["next_step"], check


def test_doctor_says_how_to_point_the_service_at_a_state_dir_of_its_own(
    tmp_path: Path,
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "srv" / "punchgate"  # not /var/lib/punchgate: systemd creates only that
    config = make_config(state_dir=state)
    code, check = state_dir_check(config, capsys, monkeypatch)
    assert code == 0 and check["verdict"] == "warn", check
    assert "systemd creates it" not in check["next_step"], check
    assert f"install -d -o punchgate -g punchgate -m 750 {state}" in check["next_step"], check
    assert f"ReadWritePaths={state}" in check["next_step"], check


def test_doctor_step_for_a_state_dir_that_is_a_file_names_the_config(
    tmp_path: Path,
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("x\n")
    config = make_config(state_dir=blocker)
    code, check = state_dir_check(config, capsys, monkeypatch)
    assert code == 6 and check["verdict"] == "fail", check
    assert f"agent.state_dir in {config}" in check["next_step"], check


@pytest.fixture
def resetting_port() -> Iterator[int]:
    """A port that accepts a connection, reads what comes and resets it (RST, not FIN)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.recv(4096)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        thread.join(timeout=10)


def test_doctor_tls_step_reports_a_reset_in_words_not_an_errno(
    make_config: Callable[..., Path],
    resetting_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(mqtt={"url": f"mqtts://127.0.0.1:{resetting_port}"})
    code, checks = doctor_checks(config, "broker", capsys, monkeypatch, "--timeout", "3")
    tls = checks["TLS handshake"]
    assert code == 6 and tls["verdict"] == "fail", tls
    assert "Errno" not in tls["detail"] and "reset" in tls["detail"], tls


def test_doctor_device_not_in_the_config_names_the_config_file_read(
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1"}])
    args = ["doctor", "--device", "lobby-2", "--config", str(config)]
    code, _out, err = run_main(args, capsys, monkeypatch)
    assert code == 2
    assert err.strip() == f"error: --device lobby-2: not in {config}; configured devices: lobby-1"


def test_doctor_names_an_outbox_path_that_is_a_directory_and_says_to_move_it(
    tmp_path: Path,
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    (state / "outbox.db").mkdir(parents=True)
    config = make_config(state_dir=state)
    code, checks = doctor_checks(config, "outbox", capsys, monkeypatch)
    check = checks["open"]
    assert code == 6 and check["verdict"] == "fail", check
    assert f"{state / 'outbox.db'} is a directory" in check["detail"], check
    assert "SD card" not in check["detail"] and "service user" not in check["next_step"], check
    assert f"mv {state / 'outbox.db'}" in check["next_step"], check
