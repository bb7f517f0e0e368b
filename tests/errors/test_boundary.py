"""The CLI's error boundary as a technician meets it: an error nobody foresaw is still one line
that names what failed and says what to do, with an exit code of its own; --debug shows more."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PUNCHGATE = Path(sys.executable).with_name("punchgate")


def punchgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PUNCHGATE), *args], capture_output=True, text=True, timeout=60, check=False
    )


def state_dir_is_a_file(tmp_path: Path) -> Path:
    """A config whose state_dir names a regular file: a mistake no raise site foresaw."""
    blocker = tmp_path / "state"
    blocker.write_text("not a directory\n")
    path = tmp_path / "punchgate.toml"
    path.write_text(
        f'[agent]\ngateway_id = "gw1"\nstate_dir = "{blocker}"\n'
        '[[devices]]\nid = "lobby"\nkind = "zk"\nhost = "127.0.0.1"\nport = 1\ntimeout = 1\n'
    )
    return path


ADD = ["punch", "add", "-e", "1042", "-d", "lobby", "--at", "2026-01-05 08:00", "-r", "sheet"]


def test_unforeseen_error_is_one_line_with_its_path_and_what_to_do(tmp_path: Path) -> None:
    config = state_dir_is_a_file(tmp_path)
    result = punchgate(*ADD, "--config", str(config))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and str(tmp_path / "state") in lines[0]
    assert "--debug" in lines[0] and "report" in lines[0]
    assert f"check the paths in {config}" in lines[0]  # the config file this command read


def test_unforeseen_error_with_json_is_one_json_document(tmp_path: Path) -> None:
    config = state_dir_is_a_file(tmp_path)
    result = punchgate(*ADD, "--json", "--config", str(config))
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["exit_code"] == 1 and error["type"] == "UnexpectedError"
    assert str(tmp_path / "state") in error["message"] and "--debug" in error["message"]


def test_debug_shows_the_traceback_of_an_unforeseen_error(tmp_path: Path) -> None:
    config = state_dir_is_a_file(tmp_path)
    result = punchgate("--debug", *ADD, "--config", str(config))
    assert result.returncode == 1 and "Traceback" in result.stderr
