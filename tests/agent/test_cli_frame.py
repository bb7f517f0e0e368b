"""The CLI frame: version, help everywhere, config commands, one error boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from agent import __version__
from agent.cli import app
from buffer import Outbox

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "punchgate.example.toml"
runner = CliRunner()


def run_entry_point(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console entry point, as a technician would."""
    return subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        paths.append(prefix)
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"punchgate {__version__}"


def test_every_command_has_help() -> None:
    paths = all_command_paths()
    assert ["config", "check"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_every_leaf_command_help_shows_an_example() -> None:
    root = typer.main.get_command(app)
    for path in all_command_paths():
        cmd: Any = root
        for name in path:
            cmd = cmd.commands[name]
        if not hasattr(cmd, "commands"):
            assert "Example" in (cmd.help or ""), (
                f"'punchgate {' '.join(path)}' help has no example"
            )


def test_config_check_accepts_the_example() -> None:
    result = runner.invoke(app, ["config", "check", "--config", str(EXAMPLE)])
    assert result.exit_code == 0
    assert result.stdout.startswith("OK: gateway plant1-gw1, 2 device(s)")


def test_config_check_lists_unknown_key_bad_scheme_and_bad_port(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[agent]\ngateway_id = "gw"\ncolour = "x"\n[mqtt]\nurl = "http://b:1883"\n'
        '[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\nport = "abc"\n'
    )
    result = run_entry_point("config", "check", "--config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert any("agent.colour: unknown key" in line for line in lines)
    assert any("mqtt.url" in line and "scheme" in line for line in lines)
    assert any("devices[0].port" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check"], env={"PUNCHGATE_CONFIG": str(EXAMPLE)})
    assert result.exit_code == 0, result.output


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[agent]\ngateway_id = "gw"\n[mqtt]\nusername = "u"\npassword = "topsecret"\n'
        '[[devices]]\nid = "a"\nkind = "zk"\nhost = "h"\ncomm_key = 123456\n'
    )
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = runner.invoke(app, [*args, "--config", str(path)])
        assert result.exit_code == 0, result.output
        assert "topsecret" not in result.output and "123456" not in result.output
    data = json.loads(runner.invoke(app, ["config", "show", "--json", "-c", str(path)]).stdout)
    assert data["mqtt"]["username"] == "u" and data["devices"][0]["comm_key"] == "***"


def test_expected_errors_print_one_line_and_exit_code_without_traceback(tmp_path: Path) -> None:
    result = run_entry_point("config", "show", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    result = run_entry_point(
        "--debug", "config", "show", "--config", str(tmp_path / "missing.toml")
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bad_log_level_is_a_usage_error() -> None:
    result = runner.invoke(app, ["--log-level", "chatty", "config", "check"])
    assert result.exit_code == 2 and "--log-level" in result.output


def test_one_shot_commands_log_only_warnings_unless_asked(tmp_path: Path) -> None:
    """A technician sees the answer, not the outbox's info lines; --log-level info shows them."""
    config = tmp_path / "c.toml"
    config.write_text(f'[agent]\ngateway_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n')
    (tmp_path / "state").mkdir()
    Outbox.open(tmp_path / "state" / "outbox.db", "gw").close()
    quiet = run_entry_point("outbox", "stats", "--config", str(config))
    assert quiet.returncode == 0, quiet.stderr
    assert "outbox_opened" not in quiet.stderr and quiet.stdout.strip()
    chatty = run_entry_point("--log-level", "info", "outbox", "stats", "--config", str(config))
    assert chatty.returncode == 0 and "outbox_opened" in chatty.stderr
