"""``punchgate punch import``: a paper sheet is checked row by row and stored all or nothing.

Also with the files spreadsheets and editors really write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.cli.punch import MAX_IMPORT_BYTES
from agent.localbroker import free_port
from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, cli

BERLIN = ZoneInfo("Europe/Berlin")
HEADER = "employee,device,at,state,reason"


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
    assert data == {
        "ok": True,
        "dry_run": True,
        "rows": 2,
        "forced": [],
        "punches": [],
        "already_imported": [],
    }
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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sheet.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def run(path: Path, config: Path) -> tuple[int, str]:
    result = cli("punch", "import", str(path), "--by", "alice", "-c", str(config))
    return result.code, result.stdout + result.stderr


def test_a_column_named_twice_is_refused_instead_of_taking_one_of_them(
    tmp_path: Path, config: Path
) -> None:
    """Which of two employee columns is the employee? Guessing binds punches to someone else."""
    path = write(tmp_path, f"employee,employee,device,at,reason\n1042,2001,lobby-1,{local(2)},x\n")
    code, out = run(path, config)
    assert code == 2, out
    assert "line 1: column employee appears more than once" in out
    assert stored(tmp_path) == []


def test_a_sheet_exported_with_semicolons_is_imported(tmp_path: Path, config: Path) -> None:
    """Spreadsheets in German, French or Dutch locales export CSV with ';' between fields."""
    path = write(
        tmp_path,
        "\ufeffemployee;device;at;state;reason\r\n"
        f'1042;lobby-1;{local(3)};in;"terminal dead; paper sheet"\r\n'
        f"1043;lobby-1;{local(3)};out;paper, sheet\r\n",
    )
    code, out = run(path, config)
    assert code == 0, out
    assert [(r["employee"], r["state"], r["reason"]) for r in stored(tmp_path)] == [
        ("1042", "in", "terminal dead; paper sheet"),
        ("1043", "out", "paper, sheet"),
    ]


def test_line_separators_inside_a_field_stay_in_the_field_and_lines_are_counted_as_in_an_editor(
    tmp_path: Path, config: Path
) -> None:
    """Only CR and LF end a line of a CSV file; U+2028 and U+2029 (pasted text) are text."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        f"1042,lobby-1,{local(3)},in,terminal\u2028dead\n"  # line 2
        f'1043,lobby-1,{local(3)},in,"two\nlines"\n'  # lines 3-4
        f"1044,lobby-1,{local(3)},in,x\u2029y\n"  # line 5
        "1045,lobby-1,2026-13-10 08:00,in,bad month\n",  # line 6
    )
    code, out = run(path, config)
    assert code == 2, out
    assert "row 6: cannot read the time '2026-13-10 08:00'" in out
    assert "field(s)" not in out and "row 7" not in out
    fixed = path.read_text(encoding="utf-8").replace("2026-13-10 08:00", local(3))
    path.write_text(fixed, encoding="utf-8", newline="")
    code, out = run(path, config)
    assert code == 0, out
    assert [r["reason"] for r in stored(tmp_path)] == [
        "terminal\u2028dead",
        "two\nlines",
        "x\u2029y",
        "bad month",
    ]


def test_a_problem_in_a_multi_line_row_names_the_line_the_row_starts_on(
    tmp_path: Path, config: Path
) -> None:
    path = write(
        tmp_path, f'{HEADER}\n1042,lobby-1,tomorrow,in,"long\nreason\nhere"\n'
    )  # the row is lines 2-4
    code, out = run(path, config)
    assert code == 2 and "row 2: cannot read the time 'tomorrow'" in out, out


def test_a_field_beyond_the_csv_limit_is_a_usage_error_with_its_line(
    tmp_path: Path, config: Path
) -> None:
    path = write(
        tmp_path, f"{HEADER}\n1042,lobby-1,{local(3)},in,ok\n1043,x,y,in,{'z' * 200_000}\n"
    )
    code, out = run(path, config)
    assert code == 2, out
    assert "line 3: " in out and "field larger than field limit" in out
    assert stored(tmp_path) == []


def test_a_file_far_larger_than_any_paper_sheet_is_refused_unread(
    tmp_path: Path, config: Path
) -> None:
    path = tmp_path / "huge.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "\n")
        line = f"1042,lobby-1,{local(3)},in,{'x' * 1000}\n"
        out.write(line * (MAX_IMPORT_BYTES // len(line) + 1))
    code, text = run(path, config)
    assert code == 2, text
    assert f"larger than {MAX_IMPORT_BYTES // 2**20} MiB" in text and "split the file" in text
    assert stored(tmp_path) == []


def test_a_nul_in_a_field_is_refused_with_its_row(tmp_path: Path, config: Path) -> None:
    """A PostgreSQL backend refuses a NUL in a text: the punch would never be acknowledged."""
    path = write(
        tmp_path,
        f"{HEADER}\n1042,lobby-1,{local(3)},in,ok\n1043,lobby-1,{local(3)},in,paper\x00sheet\n"
        f"10\x0044,lobby-1,{local(3)},in,ok\n1045,lobby-1,{local(3)},in,a\x0cpage\n",
    )
    code, out = run(path, config)
    assert code == 2, out
    assert "row 3: the reason 'paper\\x00sheet' contains a control character" in out
    assert "row 5: the reason 'a\\x0cpage' contains a control character" in out
    assert "row 4: the employee id '10\\x0044' contains a control character" in out
    assert stored(tmp_path) == []


def test_a_row_filled_down_a_thousand_times_gives_one_problem_per_row(
    tmp_path: Path, config: Path
) -> None:
    """A spreadsheet fill-down accident: every row near every other must not print n² lines."""
    path = write(tmp_path, HEADER + "\n" + f"1042,lobby-1,{local(3)},in,fill down\n" * 1000)
    code, out = run(path, config)
    assert code == 2
    lines = out.splitlines()
    assert len(lines) <= 1000 + 2, f"{len(lines)} lines for 999 duplicate rows"
    assert "row 3: employee 1042 also has row 2 at " in out
    assert "row 1001: employee 1042 also has row 2 at " in out and "and 998 more" in out
    assert stored(tmp_path) == []


# -- run again over the same sheet: a re-run after a timeout stores nothing twice ------------


def punches(tmp_path: Path) -> list[tuple[object, ...]]:
    return [
        (r["employee"], r["device_time"], r["state"], r["reason"])
        for r in stored(tmp_path)
        if r["kind"] == "punch"
    ]


def test_a_forced_import_run_twice_stores_each_row_once(tmp_path: Path, config: Path) -> None:
    at = local(3)
    path = sheet(
        tmp_path,
        f"1001,lobby-1,{at},in,terminal dead",
        f"1001,lobby-1,{at},out,terminal dead",  # same minute: needs --force
        f"1002,lobby-1,{local(2)},in,terminal dead",
    )
    first = cli("punch", "import", str(path), "--force", "--by", "alice", "-c", str(config))
    assert first.code == 0, first
    assert len(punches(tmp_path)) == 3
    again = cli("punch", "import", str(path), "--force", "--by", "bob", "-c", str(config))
    assert again.code == 0, again
    assert len(punches(tmp_path)) == 3, "the second run stored every row again"
    assert "3 row(s) already imported" in again.stdout + again.stderr
    assert "nothing new to import" in again.stdout


def test_an_import_run_again_without_force_says_it_is_already_imported(
    tmp_path: Path, config: Path
) -> None:
    """Not "use --force": that advice doubled every correction sent to HR."""
    path = sheet(tmp_path, f"1001,lobby-1,{local(3)},in,x", f"1002,lobby-1,{local(3)},in,x")
    assert cli("punch", "import", str(path), "-c", str(config)).code == 0
    again = cli("punch", "import", str(path), "-c", str(config), "--json")
    assert again.code == 0, again
    data = json.loads(again.stdout)
    ids = [r["id"] for r in stored(tmp_path)]
    assert data["punches"] == []
    assert [(s["row"], s["id"]) for s in data["already_imported"]] == [(2, ids[0]), (3, ids[1])]
    assert len(stored(tmp_path)) == 2


def test_rows_added_to_an_imported_sheet_are_imported_alone(tmp_path: Path, config: Path) -> None:
    at = local(5)
    path = sheet(tmp_path, f"1001,lobby-1,{at},in,x")
    assert cli("punch", "import", str(path), "-c", str(config)).code == 0
    path = sheet(tmp_path, f"1001,lobby-1,{at},in,x", f"1003,lobby-1,{local(4)},out,y")
    again = cli("punch", "import", str(path), "-c", str(config))
    assert again.code == 0, again
    assert "imported 1 manual punch(es)" in again.stdout
    assert "row 2" in again.stdout + again.stderr  # the skipped row is named
    assert [p[0] for p in punches(tmp_path)] == ["1001", "1003"]


def test_a_row_differing_in_state_or_reason_is_not_taken_for_an_imported_one(
    tmp_path: Path, config: Path
) -> None:
    """Only an exact twin is skipped; a near one is the duplicate check's (and --force's)."""
    at = local(3)
    first = cli(
        "punch", "import", str(sheet(tmp_path, f"1001,lobby-1,{at},in,x")), "-c", str(config)
    )
    assert first.code == 0, first
    path = sheet(tmp_path, f"1001,lobby-1,{at},out,x", f"1001,lobby-1,{at},in,other reason")
    refused = cli("punch", "import", str(path), "-c", str(config))
    assert refused.code == 2 and "already has a punch" in refused.stderr
    forced = cli("punch", "import", str(path), "--force", "-c", str(config))
    assert forced.code == 0, forced
    assert len(punches(tmp_path)) == 3


def test_a_sheet_with_a_row_twice_imported_twice_keeps_both_rows_once(
    tmp_path: Path, config: Path
) -> None:
    """Rows are matched one to one: two identical forced rows stay two, not one, not four."""
    at = local(3)
    path = sheet(tmp_path, f"1001,lobby-1,{at},in,x", f"1001,lobby-1,{at},in,x")
    for _ in range(2):
        result = cli("punch", "import", str(path), "--force", "-c", str(config))
        assert result.code == 0, result
    assert len(punches(tmp_path)) == 2


def test_a_voided_punch_is_imported_again(tmp_path: Path, config: Path) -> None:
    """A void cancels the punch: as for the duplicate check, it no longer counts."""
    path = sheet(tmp_path, f"1001,lobby-1,{local(3)},in,x")
    assert cli("punch", "import", str(path), "-c", str(config)).code == 0
    first_id = str(stored(tmp_path)[0]["id"])
    voided = cli("punch", "void", first_id, "-r", "wrong", "-c", str(config))
    assert voided.code == 0, voided
    again = cli("punch", "import", str(path), "-c", str(config))
    assert again.code == 0, again
    assert "imported 1 manual punch(es)" in again.stdout
    assert len(punches(tmp_path)) == 2


def test_a_dry_run_of_an_imported_sheet_names_the_rows_already_imported(
    tmp_path: Path, config: Path
) -> None:
    path = sheet(tmp_path, f"1001,lobby-1,{local(3)},in,x")
    assert cli("punch", "import", str(path), "-c", str(config)).code == 0
    dry = cli("punch", "import", str(path), "--dry-run", "-c", str(config))
    assert dry.code == 0, dry
    assert "1 row(s) already imported" in dry.stdout + dry.stderr
    assert len(stored(tmp_path)) == 1
