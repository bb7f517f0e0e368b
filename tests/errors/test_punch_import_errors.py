"""A paper sheet typed into a spreadsheet and saved the wrong way: `punch import` says which file,
what is wrong with it in words, and how to save it, never a Python codec or errno text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_field_json_errors import run_main

HEADER = "employee,device,at,state,reason\n"
ROW = "1042,lobby-1,2026-11-22 08:03,in,paper sheet M\u00fcller\n"


def _utf16(tmp_path: Path) -> Path:
    path = tmp_path / "sheet.csv"  # Excel "Unicode Text": UTF-16 with a BOM
    path.write_bytes((HEADER + ROW).encode("utf-16"))
    return path


def _latin1(tmp_path: Path) -> Path:
    path = tmp_path / "sheet.csv"  # Excel's plain "CSV (Comma delimited)" on Windows
    path.write_bytes((HEADER + ROW).encode("cp1252"))
    return path


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "sheets"
    path.mkdir()
    return path


CASES: list[tuple[Callable[[Path], Path], list[str]]] = [
    (_utf16, ["UTF-16", "CSV UTF-8"]),
    (_latin1, ["line 2", "not UTF-8", "0xfc", "CSV UTF-8"]),
    (_directory, ["is a directory", "the CSV file itself"]),
]


@pytest.mark.parametrize(("make", "phrases"), CASES, ids=["utf16", "cp1252", "directory"])
def test_punch_import_of_a_wrongly_saved_sheet_says_how_to_save_it(
    tmp_path: Path,
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[Path], Path],
    phrases: list[str],
) -> None:
    config = make_config(devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1"}])
    sheet = make(tmp_path)
    code, _out, err = run_main(
        ["punch", "import", str(sheet), "--config", str(config)], capsys, monkeypatch
    )
    assert code == 2, err
    assert err.startswith(f"error: {sheet}: "), err
    for phrase in phrases:
        assert phrase in err, err
    for leak in ("codec", "Errno", "position", "invalid start byte"):
        assert leak not in err, err
