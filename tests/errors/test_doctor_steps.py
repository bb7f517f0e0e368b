"""The doctor's verdict on a state directory the service cannot use: a failure, not "start the
service once", and a next step a technician can type, naming the config file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_field_json_errors import run_main


def state_dir_check(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, dict[str, Any]]:
    args = ["doctor", "--only", "config", "--json", "--config", str(config)]
    code, out, _err = run_main(args, capsys, monkeypatch)
    checks = {c["check"]: c for c in json.loads(out)["checks"]}
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
