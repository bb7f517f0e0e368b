"""The doctor points at the example config where an installed gateway has it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import cli


@pytest.fixture
def installed_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sys.prefix laid out as scripts/install.sh leaves /opt/punchgate (example in share/)."""
    prefix = tmp_path / "opt-punchgate"
    (prefix / "share").mkdir(parents=True)
    example = prefix / "share" / "punchgate.example.toml"
    example.write_text("# the annotated example\n", encoding="utf-8")
    monkeypatch.setattr(sys, "prefix", str(prefix))
    return example


@pytest.mark.parametrize("only", [["--only", "config"], ["--only", "devices"]])
def test_doctor_without_devices_names_the_installed_example_config(
    installed_prefix: Path, make_config: Callable[..., Path], only: list[str]
) -> None:
    config = make_config()
    outcome = cli("doctor", *only, "--json", "--config", str(config))
    checks = [c for c in json.loads(outcome.stdout)["checks"] if c["check"] == "devices"]
    assert checks and checks[0]["verdict"] == "warn", outcome.stdout
    assert str(installed_prefix) in checks[0]["next_step"], checks[0]
