"""``outbox check`` audits the ``wall_ok`` marks, and ``--clear-bad-marks`` repairs them.

Rows are stored by the real writer (which marks a terminal's batch whose device times are
exactly UTC + offset), then a mark or a time is corrupted by hand, the way a writer bug or a
hand-edited file would leave it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.mqtt.contract import encode, punch_payload
from agent.mqtt.encoding import PunchEncoder
from buffer import Outbox
from buffer.integrity import BAD_MARKS
from buffer.payload_json import _WALL_MATCHES
from config.errors import OutboxError
from drivers.base import Punch
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punch, punches
from tests.buffer.tamper import edit, query, shift_device_time
from tests.buffer.test_cli import cli, config  # noqa: F401 - the CLI runner and its config

SITE = "Site Nord"


def _rows(path: Path) -> list[dict[str, Any]]:
    """Every column of every punch row, in seq order."""
    return query(path, "SELECT * FROM punches ORDER BY seq")


def _marks(path: Path) -> dict[int, int | None]:
    return {r["seq"]: r["wall_ok"] for r in _rows(path)}


def _at(local: datetime, offset: int, employee: str) -> Punch:
    """A terminal punch at wall time ``local`` whose UTC time is exactly ``local - offset``."""
    utc = (local - timedelta(minutes=offset)).replace(tzinfo=UTC)
    return replace(
        punch(0), employee=employee, device_time=local, time_utc=utc, utc_offset_minutes=offset
    )


def _drain_bodies(outbox: Outbox) -> dict[int, bytes | None]:
    """Each pending row's JSON as SQL writes it for the drain (None: left to Python)."""
    return {seq: text for seq, _id, text in outbox.next_payloads(1000, site=SITE)}


def _mark_problem(problems: list[str]) -> str:
    (problem,) = [p for p in problems if p.startswith(BAD_MARKS)]
    return problem


def test_a_healthy_outbox_with_marked_rows_passes_the_check(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 20))
    outbox.add_punches([_at(datetime(2024, 6, 1, 9, 0, 0, 250), -330, "7")])
    assert set(_marks(outbox.path).values()) == {1}  # the writer marked every row
    assert outbox.check() == [] and outbox.check(full=False) == []
    before = _rows(outbox.path)
    assert outbox.clear_bad_marks() == 0 and _rows(outbox.path) == before


CORRUPTIONS = {
    "device_time off by 1 µs": lambda p: shift_device_time(p, 7, timedelta(microseconds=1)),
    "device_time off by 1 h": lambda p: shift_device_time(p, 7, timedelta(hours=1)),
    "offset changed": lambda p: edit(p, "UPDATE punches SET utc_offset_minutes = 0 WHERE seq = 7"),
    "suspect flags": lambda p: edit(
        p, "UPDATE punches SET suspect = 'time_nonexistent' WHERE seq = 7"
    ),
    "raw bytes": lambda p: edit(p, "UPDATE punches SET raw = x'0102' WHERE seq = 7"),
    "no UTC time": lambda p: edit(p, "UPDATE punches SET time_utc = NULL WHERE seq = 7"),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_check_reports_a_marked_row_its_times_do_not_bear_out(outbox: Outbox, corrupt: Any) -> None:
    outbox.add_punches(punches(0, 10))
    corrupt(outbox.path)
    problems = outbox.check()
    problem = _mark_problem(problems)
    assert problems == [problem]
    assert "on 1 row(s) (seq 7)" in problem and "wrong local time" in problem
    assert "punchgate outbox check --clear-bad-marks" in problem


def test_check_counts_every_wrong_mark_and_names_the_first_seqs(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    edit(outbox.path, "UPDATE punches SET utc_offset_minutes = 120 WHERE seq > 2")
    problem = _mark_problem(outbox.check(full=False))
    assert "on 8 row(s) (seq 3, 4, 5, 6, 7, ...)" in problem


def test_marks_in_the_last_half_millisecond_of_year_9999_are_judged_in_python(
    outbox: Outbox,
) -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, 999_999)
    outbox.add_punches(
        [
            _at(last - timedelta(microseconds=499), 0, "1"),  # 23:59:59.999500, both times
            _at(last, 60, "2"),
            _at(last, 0, "3"),
        ]
    )
    assert _marks(outbox.path) == {1: 1, 2: 1, 3: 1}
    # SQLite cannot read these times (unixepoch() rounds them to year 10000): no SQL verdict.
    unread = query(outbox.path, f"SELECT seq FROM punches WHERE ({_WALL_MATCHES}) IS NULL")  # noqa: S608
    assert [r["seq"] for r in unread] == [1, 2, 3]
    assert outbox.check() == []
    # Still unreadable to SQL after the edit (same fraction): only Python can tell it is wrong.
    edit(outbox.path, "UPDATE punches SET utc_offset_minutes = 59 WHERE seq = 2")
    problem = _mark_problem(outbox.check())
    assert "on 1 row(s) (seq 2)" in problem
    assert outbox.clear_bad_marks() == 1 and _marks(outbox.path) == {1: 1, 2: None, 3: 1}
    assert outbox.check() == []


def test_clear_bad_marks_via_the_cli_repairs_only_the_wrong_marks(config: Path) -> None:  # noqa: F811
    path = config.parent / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY) as box:
        box.add_punches(punches(0, 10))
        box.add_punches([_at(datetime(2024, 6, 1, 9, 0, 0, 250), -330, "7")])
    edit(path, "UPDATE punches SET utc_offset_minutes = 120 WHERE seq = 3")
    shift_device_time(path, 6, timedelta(hours=-1))
    before = _rows(path)
    with Outbox.open(path, GATEWAY) as box:
        # The harm: SQL trusts the mark and sends device_time + the new offset, not the time.
        wrong = json.loads(_drain_bodies(box)[3] or b"")
        assert wrong["time"] == wrong["device_time"] + "+02:00" == "2026-03-02T07:01:14+02:00"
        assert punch_payload(box.get(wrong["id"]), SITE)["time"] == "2026-03-02T08:01:14+02:00"

    out = cli("outbox", "check", "--config", str(config))
    assert out.code == OutboxError.exit_code == 5
    assert f"{BAD_MARKS} on 2 row(s) (seq 3, 6)" in out.stderr
    assert "--clear-bad-marks" in out.stderr and "restore" not in out.stderr
    assert _rows(path) == before  # check alone writes nothing

    out = cli("outbox", "check", "--clear-bad-marks", "--config", str(config))
    assert out.code == 0, out.stderr
    assert "cleared 2 wrong wall_ok mark(s)" in out.stdout and "OK:" in out.stdout
    expected = [{**r, "wall_ok": None} if r["seq"] in (3, 6) else r for r in before]
    assert _rows(path) == expected

    with Outbox.open(path, GATEWAY) as box:
        bodies = _drain_bodies(box)
        assert [seq for seq, text in bodies.items() if text is None] == [3, 6]
        encoder = PunchEncoder(SITE)
        stored = {r.seq: r for r in box.iter_rows()}
        for seq, text in bodies.items():
            row = stored[seq]
            reference = encode(punch_payload(row, SITE))
            if text is None:  # the drain encodes it in Python from the full row
                assert json.loads(encoder.encode(row)) == json.loads(reference)
            else:
                assert text == reference
    assert cli("outbox", "check", "--config", str(config)).code == 0


def test_clear_bad_marks_leaves_marks_alone_when_the_outbox_has_other_problems(
    config: Path,  # noqa: F811
) -> None:
    path = config.parent / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY) as box:
        box.add_punches(punches(0, 5))
    edit(path, "UPDATE punches SET utc_offset_minutes = 0 WHERE seq = 2")
    edit(path, "UPDATE counters SET value = 99 WHERE name = 'pending'")
    out = cli("outbox", "check", "--clear-bad-marks", "--config", str(config))
    assert out.code == 5
    assert "no mark cleared" in out.stderr and "pending counter 99 != 5" in out.stderr
    assert "restore a backup" in out.stderr
    assert _marks(path) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


def test_clear_bad_marks_waits_for_another_writer_no_longer_than_the_busy_timeout(
    outbox_path: Path,
) -> None:
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0, busy_timeout=0.2) as box:
        box.add_punches(punches(0, 5))
        edit(outbox_path, "UPDATE punches SET utc_offset_minutes = 0 WHERE seq = 2")
        other = sqlite3.connect(outbox_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # e.g. the daemon storing a large batch
            with pytest.raises(OutboxError, match=r"clearing wrong wall_ok marks failed.*locked"):
                box.clear_bad_marks()
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert _marks(outbox_path)[2] == 1
        assert box.clear_bad_marks() == 1 and _marks(outbox_path)[2] is None
