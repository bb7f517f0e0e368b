"""``punchgate config show``: what it prints is the configuration that runs."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import app
from config import load_settings
from config.loader import parse_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "punchgate.example.toml"


def test_config_show_prints_toml_that_loads_back_as_the_same_settings() -> None:
    # A technician saves the output as a starting point; card tables included.
    result = CliRunner().invoke(app, ["config", "show", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    shown = parse_settings(tomllib.loads(result.stdout), "config show")
    assert shown == load_settings(EXAMPLE, env={})
    assert shown.devices[1].cards == {"0004521837": "1001"}
