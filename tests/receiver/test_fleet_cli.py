"""``punchgate receive`` options as an operator of the HR backend types them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from config.errors import UsageError


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
