"""The CLI's error boundary as a technician meets it: an error nobody foresaw is still one line
that names what failed and says what to do, with an exit code of its own; --debug shows more.

Every known raise site is wrapped (or has a failing test in test_foreign_raise_sites.py), so
the unforeseen error here comes from a command added for the test: it reads a directory as a
file, an OSError no `except` catches, through the real ``main()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import app, main
from agent.cli.common import ConfigOption, JsonOption
from tests.cli.test_field_json_errors import run_main


@pytest.fixture
def unforeseen() -> Iterator[str]:
    """A command ``read-unguarded PATH`` whose OSError no raise site wraps."""

    def read_unguarded(
        path: Path, config: ConfigOption = None, as_json: JsonOption = False
    ) -> None:
        path.read_text()

    app.command("read-unguarded")(read_unguarded)
    added = app.registered_commands[-1]
    try:
        yield "read-unguarded"
    finally:
        app.registered_commands.remove(added)


def test_unforeseen_error_is_one_line_with_its_path_and_what_to_do(
    tmp_path: Path,
    unforeseen: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "site.toml"
    code, out, err = run_main(
        [unforeseen, str(tmp_path), "--config", str(config)], capsys, monkeypatch
    )
    assert code == 1, err
    assert out == "" and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: unexpected IsADirectoryError: {tmp_path}: Is a directory; check the paths in "
        f"{config}, then run again with --debug and report the output"
    ]


def test_unforeseen_error_with_json_is_one_json_document(
    tmp_path: Path,
    unforeseen: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _err = run_main([unforeseen, str(tmp_path), "--json"], capsys, monkeypatch)
    assert code == 1
    error = json.loads(out)["error"]
    assert error["exit_code"] == 1 and error["type"] == "UnexpectedError"
    assert str(tmp_path) in error["message"] and "--debug" in error["message"]


def test_debug_shows_the_traceback_of_an_unforeseen_error(
    tmp_path: Path, unforeseen: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["punchgate", "--debug", unforeseen, str(tmp_path)])

    with pytest.raises(IsADirectoryError):
        main()
