"""``punchgate outbox list|show|export|redeliver`` against real outbox files."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.cli.outbox_inspect import parse_since
from buffer.outbox import Outbox
from buffer.records import COLUMNS
from drivers.base import Punch, PunchState, Source, VerifyMethod
from tests.cli.conftest import GATEWAY, cli

BERLIN = ZoneInfo("Europe/Berlin")


def punch(device: str, employee: str, hours_ago: float, source: Source = Source.DEVICE) -> Punch:
    utc = (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(microsecond=0)
    return Punch(
        device_id=device,
        device_serial="SER-" + device,
        employee=employee,
        device_time=utc.astimezone(BERLIN).replace(tzinfo=None),
        time_utc=utc,
        utc_offset_minutes=int(utc.astimezone(BERLIN).utcoffset().total_seconds() // 60),  # type: ignore[union-attr]
        state=PunchState.IN,
        verify=VerifyMethod.MANUAL if source is Source.MANUAL else VerifyMethod.FINGERPRINT,
        source=source,
    )


@pytest.fixture
def filled(tmp_path: Path, make_config: Callable[..., Path]) -> tuple[Path, dict[str, str]]:
    """Config + outbox: 4 device punches (2 delivered), a manual punch and a void of it."""
    config = make_config()
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        added = outbox.add_punches(
            [
                punch("lobby-1", "7", 30),
                punch("lobby-1", "8", 20),
                punch("dock-1", "7", 3),
                punch("dock-1", "9", 1),
            ]
        )
        outbox.mark_delivered(added.ids[:2])
        manual = outbox.add_manual(
            punch("lobby-1", "7", 2, Source.MANUAL), operator="alice", reason="paper sheet"
        )
        void = outbox.add_void(manual.id, operator="bob", reason="entered twice")
    return config, {"first": added.ids[0], "manual": manual.id, "void": void.id}


def test_list_shows_rows_oldest_first_with_manual_and_void_flags(
    filled: tuple[Path, dict[str, str]],
) -> None:
    config, ids = filled
    result = cli("outbox", "list", "-c", str(config))
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["seq", "id", "device", "employee"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3", "4", "5", "6"]
    manual_line = next(line for line in lines if ids["manual"] in line and "void of" not in line)
    assert "manual by alice" in manual_line and "voided" in manual_line
    assert f"void of {ids['manual']}" in lines[6]


def test_list_filters_pending_device_employee_since_and_limit(
    filled: tuple[Path, dict[str, str]],
) -> None:
    config, _ = filled

    def seqs(*args: str) -> list[int]:
        result = cli("outbox", "list", "-c", str(config), "--json", *args)
        assert result.code == 0, result
        return [row["seq"] for row in json.loads(result.stdout)]

    assert seqs("--pending") == [3, 4, 5, 6]
    assert seqs("--device", "dock-1") == [3, 4]
    assert seqs("--employee", "7") == [1, 3, 5, 6]
    assert seqs("--since", "4h") == [3, 4, 5, 6]
    assert seqs("--limit", "2") == [5, 6]
    assert seqs("--employee", "nobody") == []


def test_show_prints_every_field_and_who_voided_it(filled: tuple[Path, dict[str, str]]) -> None:
    config, ids = filled
    result = cli("outbox", "show", ids["manual"], "-c", str(config))
    assert result.code == 0, result
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line)
    assert fields["operator"].strip() == "alice" and fields["source"].strip() == "manual"
    assert fields["voided_by"].strip() == ids["void"]
    data = json.loads(cli("outbox", "show", ids["first"], "-c", str(config), "--json").stdout)
    assert data["delivery"] == "delivered" and data["voided_by"] is None
    missing = cli("outbox", "show", "nope", "-c", str(config))
    assert missing.code == 2 and "no punch with id nope" in missing.stderr


def test_export_csv_to_a_file_has_every_column_and_row(
    tmp_path: Path, filled: tuple[Path, dict[str, str]]
) -> None:
    config, ids = filled
    target = tmp_path / "export.csv"
    result = cli("outbox", "export", "--format", "csv", "-o", str(target), "-c", str(config))
    assert result.code == 0, result
    assert "exported 6 row(s)" in result.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert list(rows[0]) == [*COLUMNS, "replayed"]
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[5]["kind"] == "void" and rows[5]["void_of"] == ids["manual"]
    assert rows[4]["operator"] == "alice" and rows[4]["card"] == ""


def test_export_jsonl_since_to_stdout(filled: tuple[Path, dict[str, str]]) -> None:
    config, _ = filled
    result = cli("outbox", "export", "--format", "jsonl", "--since", "4h", "-c", str(config))
    assert result.code == 0, result
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seq"] for r in rows] == [3, 4, 5, 6]


def test_redeliver_marks_delivered_rows_pending_again(filled: tuple[Path, dict[str, str]]) -> None:
    config, _ = filled
    result = cli("outbox", "redeliver", "--from-seq", "2", "-c", str(config), "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout) == {"from_seq": 2, "marked_pending": 1}
    pending = json.loads(cli("outbox", "list", "--pending", "--json", "-c", str(config)).stdout)
    assert [r["seq"] for r in pending] == [2, 3, 4, 5, 6]
    text = cli("outbox", "redeliver", "--from-seq", "1", "-c", str(config))
    assert text.code == 0 and "1 delivered punch(es) from seq 1 on are pending again" in text.stdout


def test_reading_commands_refuse_a_missing_outbox_and_do_not_create_it(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    config = make_config()
    result = cli("outbox", "list", "-c", str(config))
    assert result.code == 5 and "no outbox at" in result.stderr
    assert not (tmp_path / "state" / "outbox.db").exists()


def test_since_accepts_durations_dates_and_offsets() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_since("2h", BERLIN, now) == now - timedelta(hours=2)
    assert parse_since("7d", BERLIN, now) == now - timedelta(days=7)
    assert parse_since("2026-11-22", BERLIN, now) == datetime(2026, 11, 22, tzinfo=BERLIN)
    assert parse_since("2026-11-22 08:00", BERLIN, now) == datetime(2026, 11, 22, 8, tzinfo=BERLIN)
    assert parse_since("2026-11-22T08:00+00:00", BERLIN, now) == datetime(
        2026, 11, 22, 8, tzinfo=UTC
    )
    with pytest.raises(Exception, match="duration back from now"):
        parse_since("yesterday", BERLIN, now)


def test_a_damaged_row_gets_a_clear_error_not_a_traceback(
    filled: tuple[Path, dict[str, str]],
) -> None:
    config, ids = filled
    conn = sqlite3.connect(config.parent / "state" / "outbox.db")
    conn.execute("UPDATE punches SET received_at = 'not a time' WHERE id = ?", (ids["first"],))
    conn.commit()
    conn.close()
    result = cli("outbox", "list", "-c", str(config))
    assert result.code == 5, result
    assert "has a damaged stored value" in result.stderr
    assert "punchgate outbox check" in result.stderr
