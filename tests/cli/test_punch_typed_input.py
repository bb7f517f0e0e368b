"""``punchgate punch add|void`` with what technicians really type: odd terminals, odd years."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.localbroker import free_port
from agent.manual import ManualRequest, ManualValidator, Online, operator_problem
from agent.mqtt.contract import Contract, punch_payload
from buffer.outbox import Outbox
from config import load_settings
from drivers.zk.simulator import ZkSimulator
from tests.cli.conftest import GATEWAY, cli, write_config

BERLIN = ZoneInfo("Europe/Berlin")
CONTRACT = Contract.load()
LATIN1_U_UMLAUT = "\udcfc"  # "ü" typed in a Latin-1 terminal: Python's argv keeps the byte so


def local(hours_ago: float) -> str:
    return (datetime.now(BERLIN) - timedelta(hours=hours_ago)).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def config(make_config: Callable[..., Path]) -> Path:
    port = free_port()  # nothing listens: the terminals are offline
    return make_config(
        devices=[
            {"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": port},
            {
                "id": "tokyo-1",
                "kind": "zk",
                "host": "127.0.0.1",
                "port": port,
                "timezone": "Asia/Tokyo",
            },
            {
                "id": "ny-1",
                "kind": "zk",
                "host": "127.0.0.1",
                "port": port,
                "timezone": "America/New_York",
            },
        ],
        manual={"max_age": "7d", "duplicate_window": "5m"},
    )


def add(config: Path, **fields: str) -> list[str]:
    values = {"employee": "1042", "device": "lobby-1", "at": local(2), "reason": "paper sheet"}
    values |= fields
    args = ["punch", "add", "-c", str(config)]
    for name, value in values.items():
        args += [f"--{name}", value]
    return args


def rows(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "state" / "outbox.db"
    if not path.exists():
        return []
    with Outbox.open(path, GATEWAY) as outbox:
        return [r.as_dict() for r in outbox.list()]


@pytest.mark.parametrize(
    "field", ["reason", "employee", "by"], ids=["reason", "employee", "operator"]
)
def test_text_from_a_terminal_not_set_to_utf8_is_refused_with_advice(
    tmp_path: Path, config: Path, field: str
) -> None:
    result = cli(*add(config, **{field: f"M{LATIN1_U_UMLAUT}ller"}))
    assert result.code == 2, result
    assert "not valid UTF-8" in result.stderr and "set the terminal to UTF-8" in result.stderr
    assert rows(tmp_path) == []


def test_void_typed_in_a_terminal_not_set_to_utf8_is_refused_with_advice(
    tmp_path: Path, config: Path
) -> None:
    stored = json.loads(cli(*add(config), "--json").stdout)["punch"]
    reason = cli("punch", "void", stored["id"], "-c", str(config), "-r", f"M{LATIN1_U_UMLAUT}")
    assert reason.code == 2 and "not valid UTF-8" in reason.stderr, reason
    punch_id = cli("punch", "void", f"{stored['id']}{LATIN1_U_UMLAUT}", "-c", str(config),
                   "-r", "typo")  # fmt: skip
    assert punch_id.code == 2 and "not valid UTF-8" in punch_id.stderr, punch_id
    assert [r["kind"] for r in rows(tmp_path)] == ["punch"]


@pytest.mark.parametrize(
    ("device", "at", "expected"),
    [
        ("tokyo-1", "0001-01-01 00:00", "older than the limit"),
        ("lobby-1", "0001-01-01 01:30", "older than the limit"),
        ("ny-1", "9999-12-31 23:59", "is in the future"),
    ],
)
def test_a_year_at_the_edge_of_the_calendar_is_refused_by_the_time_rules(
    tmp_path: Path, config: Path, device: str, at: str, expected: str
) -> None:
    result = cli(*add(config, device=device, at=at))
    assert result.code == 2, result
    assert expected in result.stderr
    assert rows(tmp_path) == []


def test_a_void_reason_obeys_the_same_length_limit_as_a_punch_reason(
    tmp_path: Path, config: Path
) -> None:
    """The contract allows 2000 characters; a longer void would fail a validating backend."""
    stored = json.loads(cli(*add(config), "--json").stdout)["punch"]
    result = cli("punch", "void", stored["id"], "-c", str(config), "-r", "x" * 2001)
    assert result.code == 2 and "longer than 2000 characters" in result.stderr, result
    assert [r["kind"] for r in rows(tmp_path)] == ["punch"]
    assert cli("punch", "void", stored["id"], "-c", str(config), "-r", "x" * 2000).code == 0


@pytest.mark.parametrize(
    ("typed", "ascii_form"),
    [("１０４２", "1042"), ("١٠٤٢", "1042"), ("۱۰۴۲", "1042"), ("१०४२", "1042")],
    ids=["fullwidth", "arabic-indic", "persian", "devanagari"],
)
def test_an_employee_id_in_non_ascii_digits_is_refused_with_the_ascii_form(
    tmp_path: Path, config: Path, typed: str, ascii_form: str
) -> None:
    """A terminal's keypad only makes ASCII digits: stored as typed, it matches no employee."""
    result = cli(*add(config, employee=typed))
    assert result.code == 2, result
    assert f"type it as on the terminal: {ascii_form}" in result.stderr
    assert rows(tmp_path) == []


def test_control_characters_in_the_employee_id_are_refused(tmp_path: Path, config: Path) -> None:
    result = cli(*add(config, employee="10\x1b42"))
    assert result.code == 2 and "control character" in result.stderr, result
    assert rows(tmp_path) == []


def test_a_terminal_that_answers_but_refuses_the_comm_key_counts_as_online(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """It is alive and has its punches: the gateway just cannot read them until the key is fixed."""
    with ZkSimulator(serial="SIM-KEY", comm_key=1234) as sim:
        config = make_config(
            devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": sim.port}]
        )
        refused = cli(*add(config))
    assert refused.code == 2, refused
    assert "device lobby-1 is online" in refused.stderr and "comm key" in refused.stderr
    assert rows(tmp_path) == []


class _Offline:
    """No terminal answers: the online rule never applies in the property below."""

    def __call__(self, device: object) -> Online:
        return Online(False, "not probed in this test")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    employee=st.text(min_size=1, max_size=140),
    reason=st.text(min_size=1, max_size=60),
    operator=st.text(min_size=1, max_size=30),
)
@example(employee="1042\x00", reason="x", operator="alice")
@example(employee="１０４２", reason="x", operator="alice")
@example(employee="1042", reason="M\udcfcller", operator="alice")
@example(employee="10\u0301", reason="x", operator="alice")
def test_text_a_validation_accepts_is_stored_found_and_within_the_contract(
    employee: str, reason: str, operator: str
) -> None:
    """Whatever the rules let through reaches the backend unchanged, and its employee is found."""
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(
            Path(tmp) / "punchgate.toml",
            state_dir=Path(tmp) / "state",
            devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": 1}],
        )
        app_settings = load_settings(config)
        with Outbox.open(Path(tmp) / "outbox.db", GATEWAY) as outbox:
            validator = ManualValidator(app_settings, outbox, online=_Offline())
            checked = validator.check(ManualRequest(employee, "lobby-1", local(2), "in", reason))
            if checked.blocking(force=False) or operator_problem(operator) is not None:
                return
            assert checked.punch is not None
            stored = outbox.add_manual(checked.punch, operator=operator, reason=reason.strip())
            assert (stored.employee, stored.reason) == (employee.strip(), reason.strip())
            assert [p.id for p in outbox.list(employee=employee.strip())] == [stored.id]
            assert CONTRACT.errors("punch", punch_payload(stored, "site")) == []
