"""``punchgate receive`` options as an operator of the HR backend types them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.localbroker import free_port
from config.errors import ConfigError, UsageError


@pytest.mark.parametrize("interval", ["0", "-5"])
def test_a_report_interval_that_is_not_positive_is_refused_before_receiving(
    tmp_path: Path, interval: str
) -> None:
    """Without --duration, 0 printed the stats and gap report in a busy loop (thousands of
    lines a second, a core spinning, the database read each time) until stopped."""
    db = tmp_path / "hr.db"
    args = ["receive", "--db", str(db), "--url", "mqtt://127.0.0.1:1", "--duration", "0.5"]
    result = CliRunner().invoke(app, [*args, "--report-interval", interval])
    assert isinstance(result.exception, UsageError), result.output  # exit code 2 in main()
    assert "--report-interval must be more than 0 seconds" in str(result.exception)
    assert "receiving" not in result.output


def test_each_report_says_when_the_receiver_cannot_reach_its_broker(tmp_path: Path) -> None:
    """The broker is down: the reports said only 'messages: 0' (the reason was logged once, at
    the first attempt), so an operator watching saw a quiet fleet, not a dead link."""
    port = free_port()
    args = ["receive", "--db", str(tmp_path / "hr.db"), "--url", f"mqtt://127.0.0.1:{port}"]
    result = CliRunner().invoke(app, [*args, "--report-interval", "0.3", "--duration", "1"])
    assert result.exit_code == 0, result.output
    reports = [line for line in result.output.splitlines() if line.startswith("stats:")]
    assert reports, result.output
    warnings = [line for line in result.output.splitlines() if "not connected" in line]
    assert len(warnings) >= len(reports), result.output
    assert f"127.0.0.1:{port}" in warnings[-1] and "refused" in warnings[-1]


@pytest.mark.parametrize("value", ["", "  ", " hr.db", "hr.db\n"])
def test_a_blank_or_space_padded_db_is_refused_and_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """``--db "$HR_DB"`` with the variable unset or pasted with a space: '' failed as 'cannot
    open the receiver database .', and '  ' quietly made a database file named two spaces."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["receive", "--db", value, "--gaps"])
    assert isinstance(result.exception, ConfigError), result.output
    assert "--db" in str(result.exception)
    assert list(tmp_path.iterdir()) == []
