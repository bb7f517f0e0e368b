"""``punchgate punch import``: a paper sheet is checked row by row and stored all or nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.localbroker import free_port
from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, cli

BERLIN = ZoneInfo("Europe/Berlin")


def local(hours_ago: float) -> str:
    return (datetime.now(BERLIN) - timedelta(hours=hours_ago)).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def config(make_config: Callable[..., Path]) -> Path:
    return make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": free_port()}],
        manual={"max_age": "7d", "duplicate_window": "5m"},
    )


def sheet(tmp_path: Path, *rows: str, header: str = "employee,device,at,state,reason") -> Path:
    path = tmp_path / "sheet.csv"
    path.write_text("\ufeff" + "\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def stored(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "state" / "outbox.db"
    if not path.exists():
        return []
    with Outbox.open(path, GATEWAY) as outbox:
        return [r.as_dict() for r in outbox.list()]


def test_clean_sheet_is_imported_in_one_go(tmp_path: Path, config: Path) -> None:
    path = sheet(
        tmp_path,
        f"1001,lobby-1,{local(3)},in,terminal offline",
        "",
        f'1002,lobby-1,{local(3)},,"offline, paper sheet"',
        f"1001,lobby-1,{local(1)},out,terminal offline",
    )
    result = cli("punch", "import", str(path), "--by", "alice", "-c", str(config))
    assert result.code == 0, result
    assert "imported 3 manual punch(es), seq 1-3, operator alice" in result.stdout
    rows = stored(tmp_path)
    assert [(r["employee"], r["state"]) for r in rows] == [
        ("1001", "in"),
        ("1002", "unknown"),
        ("1001", "out"),
    ]
    assert {(r["source"], r["operator"]) for r in rows} == {("manual", "alice")}
    assert rows[1]["reason"] == "offline, paper sheet"
    assert len({r["entered_at"] for r in rows}) == 1  # one entry, one time


def test_every_problem_is_reported_with_its_row_and_nothing_is_stored(
    tmp_path: Path, config: Path
) -> None:
    path = sheet(
        tmp_path,
        f"1001,lobby-1,{local(3)},in,ok row",  # line 2: fine on its own
        f"1002,lobby-9,{local(3)},in,wrong device",  # line 3
        f"1003,lobby-1,{local(-3)},in,future",  # line 4
        f"1004,lobby-1,{local(3)},lunch,bad state",  # line 5
        f"1001,lobby-1,{local(3)},out,same minute as line 2",  # line 6: duplicate in the sheet
        "1005,lobby-1,2026-13-45 25:00,in,bad date",  # line 7
        "1006,lobby-1",  # line 8: too few fields
    )
    result = cli("punch", "import", str(path), "-c", str(config))
    assert result.code == 2
    err = result.stderr
    assert "nothing imported" in err
    assert "row 3: unknown device 'lobby-9'; known devices: lobby-1" in err
    assert "row 4: " in err and "in the future" in err
    assert "row 5: unknown state 'lunch'" in err
    assert "row 6: employee 1001 also has row 2" in err and "use --force" in err
    assert "row 7: cannot read the time '2026-13-45 25:00'" in err
    assert "row 8: 2 field(s), the header has 5" in err
    assert "row 2:" not in err
    assert stored(tmp_path) == []


def test_dry_run_checks_and_stores_nothing(tmp_path: Path, config: Path) -> None:
    path = sheet(tmp_path, f"1001,lobby-1,{local(3)},in,x", f"1002,lobby-1,{local(3)},out,y")
    result = cli("punch", "import", str(path), "--dry-run", "-c", str(config), "--json")
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert data == {"ok": True, "dry_run": True, "rows": 2, "forced": [], "punches": []}
    assert stored(tmp_path) == []


def test_duplicate_of_a_stored_punch_needs_force(tmp_path: Path, config: Path) -> None:
    at = local(2)
    first = cli(
        "punch", "add", "-e", "1001", "-d", "lobby-1", "--at", at, "-r", "x", "-c", str(config)
    )
    assert first.code == 0, first
    path = sheet(tmp_path, f"1001,lobby-1,{at},in,from the sheet")
    refused = cli("punch", "import", str(path), "-c", str(config))
    assert refused.code == 2 and "row 2: employee 1001 already has a punch" in refused.stderr
    forced = cli("punch", "import", str(path), "--force", "-c", str(config))
    assert forced.code == 0, forced
    assert "warning (--force): row 2: employee 1001 already has a punch" in forced.stderr
    assert len(stored(tmp_path)) == 2


def test_wrong_header_names_the_missing_and_unknown_columns(tmp_path: Path, config: Path) -> None:
    path = sheet(tmp_path, "1001,lobby-1,2026-11-22 08:00,x", header="employee,device,when,why")
    result = cli("punch", "import", str(path), "-c", str(config))
    assert result.code == 2
    assert "line 1: missing column(s) at, reason; unknown column(s) when, why" in result.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path, config: Path) -> None:
    result = cli("punch", "import", str(tmp_path / "nope.csv"), "-c", str(config))
    assert result.code == 2 and "nope.csv: no such file" in result.stderr
