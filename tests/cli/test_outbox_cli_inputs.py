"""The outbox commands fed the ugly inputs of the field: far dates, odd paths, formula text."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.cli.outbox_inspect import parse_since
from buffer.outbox import Outbox
from drivers.base import Source
from tests.cli.conftest import GATEWAY, cli
from tests.cli.test_outbox_inspect import BERLIN, punch


@pytest.fixture
def config(tmp_path: Path, make_config: Callable[..., Path]) -> Path:
    """Config + an outbox with two device punches and a manual one."""
    path = make_config()
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([punch("lobby-1", "7", 30), punch("lobby-1", "8", 20)])
        outbox.add_manual(punch("lobby-1", "7", 2, Source.MANUAL), operator="alice", reason="x")
    return path


@pytest.mark.parametrize(
    "since", ["99999999999d", "36501d", "0001-01-01", "9999-12-31T23:59-05:00"]
)
def test_list_with_a_far_since_is_a_usage_error_or_an_answer_never_a_traceback(
    config: Path, since: str
) -> None:
    result = cli("outbox", "list", "--since", since, "-c", str(config), "--json")
    assert result.code in (0, 2), result
    if result.code == 2:
        assert "--since" in result.stderr


def test_since_year_one_means_everything_and_year_9999_nothing() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_since("0001-01-01", BERLIN, now) <= datetime(1, 1, 2, tzinfo=UTC)
    assert parse_since("9999-12-31T23:59-05:00", BERLIN, now) > now


def test_export_to_a_directory_or_a_missing_folder_says_so_with_exit_2(
    tmp_path: Path, config: Path
) -> None:
    for target in (tmp_path, tmp_path / "no-such-folder" / "punches.csv"):
        result = cli("outbox", "export", "-o", str(target), "-c", str(config))
        assert result.code == 2, result
        assert f"cannot write {target}" in result.stderr


def test_export_csv_neutralises_formula_text_but_keeps_numbers_and_odd_characters(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    config = make_config()
    reason = '=HYPERLINK("http://x","y"), "quoted"\nsecond line 😀'
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches(
            [punch("lobby-1", e, 5) for e in ("=1+2", "+49", "-5", "@SUM(A1)", "\t=1", "7")]
        )
        outbox.add_manual(punch("lobby-1", "7", 2, Source.MANUAL), operator="al", reason=reason)
    result = cli("outbox", "export", "--format", "csv", "-c", str(config))
    assert result.code == 0, result
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    employees = [r["employee"] for r in rows]
    assert employees == ["'=1+2", "'+49", "'-5", "'@SUM(A1)", "'\t=1", "7", "7"]
    assert rows[-1]["reason"] == "'" + reason
    assert rows[0]["utc_offset_minutes"] == "60"
    jsonl = cli("outbox", "export", "--format", "jsonl", "-c", str(config))
    assert '"employee": "=1+2"' in jsonl.stdout  # JSON lines are data for programs: unchanged


def test_backup_refuses_to_overwrite_the_live_outbox_or_a_file_that_is_no_database(
    tmp_path: Path, config: Path
) -> None:
    live = tmp_path / "state" / "outbox.db"
    inode = live.stat().st_ino
    result = cli("outbox", "backup", str(live), "-c", str(config))
    assert result.code == 2, result
    assert "is the outbox itself" in result.stderr
    assert live.stat().st_ino == inode  # the daemon's open file was not replaced
    before = config.read_bytes()
    result = cli("outbox", "backup", str(config), "-c", str(config))
    assert result.code == 2, result
    assert "is not an outbox backup" in result.stderr
    assert config.read_bytes() == before


def test_backup_over_an_older_backup_replaces_it(tmp_path: Path, config: Path) -> None:
    target = tmp_path / "usb" / "outbox-site1.db"
    assert cli("outbox", "backup", str(target), "-c", str(config)).code == 0
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([punch("dock-1", "9", 1)])
    assert cli("outbox", "backup", str(target), "-c", str(config)).code == 0
    with Outbox.open(target, GATEWAY, recover=False) as copy:
        assert copy.stats().last_seq == 4


@pytest.mark.parametrize(
    "args",
    [
        ["show", "M\udcfcller"],  # a Latin-1 terminal's ü reaches argv as a lone surrogate
        ["list", "--employee", "M\udcfcller"],
        ["list", "--device", "lobby-\udcfc"],
        ["redeliver", "--from-seq", "99999999999999999999999"],
    ],
)
def test_arguments_no_query_can_hold_are_usage_errors_with_exit_2(
    config: Path, args: list[str]
) -> None:
    result = cli("outbox", *args, "-c", str(config))
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
