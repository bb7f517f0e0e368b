"""The doctor's word on secrets kept in the config file itself (terminal comm keys, an inline
MQTT password): a config every local user can read gives them all away."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from tests.cli.conftest import cli

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
