"""``punchgate punch add|void``: manual correction punches with real outbox files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.daemon.status_file import write_status
from agent.localbroker import free_port
from buffer.outbox import Outbox
from drivers.zk.simulator import ZkSimulator
from tests.cli.conftest import GATEWAY, cli

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")


def local(hours_ago: float, tz: ZoneInfo = BERLIN) -> str:
    """A device-local time ``hours_ago`` before now, as a technician types it."""
    return (datetime.now(tz) - timedelta(hours=hours_ago)).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def config(make_config: Callable[..., Path]) -> Path:
    """Two offline terminals (nothing listens on their ports), one of them in Tokyo."""
    return make_config(
        devices=[
            {"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": free_port()},
            {
                "id": "tokyo-1",
                "kind": "zk",
                "host": "127.0.0.1",
                "port": free_port(),
                "timezone": "Asia/Tokyo",
            },
        ],
        manual={"max_age": "7d", "duplicate_window": "5m"},
    )


def add(config: Path, *extra: str, employee: str = "1042", at: str | None = None) -> list[str]:
    return [
        "punch", "add", "-c", str(config), "--employee", employee, "--device", "lobby-1",
        "--at", at or local(2), "--reason", "terminal offline, paper sheet", *extra,
    ]  # fmt: skip


def outbox_rows(tmp_path: Path) -> list[dict[str, object]]:
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        return [r.as_dict() for r in outbox.list()]


def test_add_stores_a_manual_punch_with_audit_fields_read_in_device_time(
    tmp_path: Path, config: Path
) -> None:
    at = local(3)
    result = cli(*add(config, "--state", "in", "--by", "alice", "--json", at=at))
    assert result.code == 0, result
    punch = json.loads(result.stdout)["punch"]
    naive = datetime.strptime(at, "%Y-%m-%d %H:%M")
    expected_utc = naive.replace(tzinfo=BERLIN).astimezone(UTC)
    assert punch["source"] == "manual" and punch["verify"] == "manual"
    assert punch["operator"] == "alice" and punch["reason"] == "terminal offline, paper sheet"
    assert punch["state"] == "in" and punch["delivery"] == "pending"
    assert datetime.fromisoformat(punch["time_utc"]) == expected_utc
    assert punch["device_time"] == naive.isoformat()
    entered = datetime.fromisoformat(punch["entered_at"])
    assert abs((entered - datetime.now(UTC)).total_seconds()) < 600
    assert [r["id"] for r in outbox_rows(tmp_path)] == [punch["id"]]


def test_at_is_read_in_the_devices_own_timezone(tmp_path: Path, config: Path) -> None:
    at = local(1, TOKYO)
    args = add(config, "--json", at=at)
    args[args.index("lobby-1")] = "tokyo-1"
    result = cli(*args)
    assert result.code == 0, result
    punch = json.loads(result.stdout)["punch"]
    assert punch["utc_offset_minutes"] == 540
    naive = datetime.strptime(at, "%Y-%m-%d %H:%M")
    assert datetime.fromisoformat(punch["time_utc"]) == naive.replace(tzinfo=TOKYO)


def test_operator_defaults_to_the_sudo_user(tmp_path: Path, config: Path) -> None:
    result = cli(*add(config, "--json"), env={"SUDO_USER": "bob"})
    assert result.code == 0, result
    assert json.loads(result.stdout)["punch"]["operator"] == "bob"


def test_unknown_device_is_named_with_the_known_ones(tmp_path: Path, config: Path) -> None:
    args = add(config)
    args[args.index("lobby-1")] = "lobby-9"
    result = cli(*args)
    assert result.code == 2
    assert "unknown device 'lobby-9'; known devices: lobby-1, tokyo-1" in result.stderr
    assert not (tmp_path / "state" / "outbox.db").exists() or outbox_rows(tmp_path) == []


def test_future_and_too_old_times_are_refused(tmp_path: Path, config: Path) -> None:
    future = cli(*add(config, at=local(-2)))
    assert future.code == 2 and "is in the future" in future.stderr
    old = cli(*add(config, at=local(24 * 8)))
    assert old.code == 2 and "older than the limit of 7d ([manual].max_age)" in old.stderr
    forced = cli(*add(config, "--force", at=local(24 * 8)))
    assert forced.code == 2, "--force never overrides the age limit"
    assert outbox_rows(tmp_path) == []


def test_unreadable_time_and_state_are_explained(config: Path) -> None:
    result = cli(*add(config, "--state", "lunch", at="22.11.2026 8:03"))
    assert result.code == 2
    assert "write it as 'YYYY-MM-DD HH:MM'" in result.stderr
    assert "unknown state 'lunch': use one of in, out, break_out" in result.stderr


def test_same_employee_within_the_window_needs_force(tmp_path: Path, config: Path) -> None:
    first = cli(*add(config, "--json", at=local(2)))
    assert first.code == 0, first
    first_id = json.loads(first.stdout)["punch"]["id"]
    again = cli(*add(config, at=local(2)))
    assert again.code == 2
    assert "already has a punch" in again.stderr and first_id in again.stderr
    assert "use --force" in again.stderr
    other = cli(*add(config, employee="2001", at=local(2)))
    assert other.code == 0, "another employee at the same minute is fine"
    forced = cli(*add(config, "--force", at=local(2)))
    assert forced.code == 0 and "stored because of --force" in forced.stderr
    assert len(outbox_rows(tmp_path)) == 3


def test_a_voided_punch_no_longer_blocks_a_corrected_one(tmp_path: Path, config: Path) -> None:
    at = local(2)
    first = json.loads(cli(*add(config, "--json", at=at)).stdout)["punch"]
    void = cli("punch", "void", first["id"], "-c", str(config), "--reason", "wrong minute")
    assert void.code == 0, void
    assert f"voided {first['id']}" in void.stdout
    assert cli(*add(config, at=at)).code == 0


def test_void_records_an_event_and_never_deletes(tmp_path: Path, config: Path) -> None:
    stored = json.loads(cli(*add(config, "--json")).stdout)["punch"]
    result = cli(
        "punch", "void", stored["id"], "-c", str(config), "--reason", "typo", "--by", "carol",
        "--json",
    )  # fmt: skip
    assert result.code == 0, result
    event = json.loads(result.stdout)["void"]
    assert event["kind"] == "void" and event["void_of"] == stored["id"]
    assert event["operator"] == "carol" and event["reason"] == "typo"
    rows = outbox_rows(tmp_path)
    assert [r["id"] for r in rows] == [stored["id"], event["id"]]  # the original is still there
    twice = cli("punch", "void", stored["id"], "-c", str(config), "--reason", "again")
    assert twice.code == 2 and "already voided" in twice.stderr
    unknown = cli("punch", "void", "no-such-id", "-c", str(config), "--reason", "x")
    assert unknown.code == 2 and "no punch with id no-such-id" in unknown.stderr


def test_online_terminal_needs_force(tmp_path: Path, make_config: Callable[..., Path]) -> None:
    with ZkSimulator(serial="SIM-ON") as sim:
        config = make_config(
            devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": sim.port}]
        )
        refused = cli(*add(config))
        assert refused.code == 2
        assert "device lobby-1 is online (it answers on 127.0.0.1:" in refused.stderr
        forced = cli(*add(config, "--force", "--json"))
    assert forced.code == 0, forced
    assert "is online" in json.loads(forced.stdout)["forced"][0]


def test_online_state_comes_from_the_running_daemon_when_there_is_one(
    tmp_path: Path, config: Path
) -> None:
    status = {
        "pid": os.getpid(),
        "updated_unix": time.time(),
        "interval_s": 15,
        "state": "running",
        "devices": [
            {"device_id": "lobby-1", "state": "online"},
            {"device_id": "tokyo-1", "state": "unreachable"},
        ],
    }
    write_status(tmp_path / "state", status)
    refused = cli(*add(config))
    assert refused.code == 2 and "the running daemon sees it online" in refused.stderr
    args = add(config, at=local(1, TOKYO))
    args[args.index("lobby-1")] = "tokyo-1"
    assert cli(*args).code == 0


def test_refusal_as_json_lists_the_problems(config: Path) -> None:
    result = cli(*add(config, "--json", at=local(-1)))
    assert result.code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False and any("future" in p for p in data["problems"])


def test_entry_point_exits_2_with_one_line_for_an_unknown_punch(
    tmp_path: Path, config: Path
) -> None:
    """Through the real console entry point and its error boundary, as on site."""
    Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY).close()
    result = subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", "punch", "void", "nope",
         "-c", str(config), "--reason", "x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "error: no punch with id nope" in result.stderr
    assert "Traceback" not in result.stderr


def last_ambiguous_berlin_time() -> datetime:
    """The latest 02:30 in Berlin that happened twice (DST end), before now."""
    day = datetime.now(BERLIN).replace(hour=2, minute=30, second=0, microsecond=0, tzinfo=None)
    for _ in range(400):
        day -= timedelta(days=1)
        if (
            day.replace(tzinfo=BERLIN, fold=0).utcoffset()
            != day.replace(tzinfo=BERLIN, fold=1).utcoffset()
        ):
            return day
    raise AssertionError("no DST end in Berlin within 400 days")


def test_a_time_that_happened_twice_is_stored_flagged_with_a_note(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": free_port()}],
        manual={"max_age": "400d"},
    )
    at = last_ambiguous_berlin_time()
    result = cli(*add(config, at=at.strftime("%Y-%m-%d %H:%M")))
    assert result.code == 0, result
    assert "happened twice in Europe/Berlin (DST end): the first was used" in result.stdout
    (row,) = outbox_rows(tmp_path)
    assert row["suspect"] == ["time_ambiguous"] and row["utc_offset_minutes"] == 120
