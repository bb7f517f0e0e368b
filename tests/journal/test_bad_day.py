"""What IT reads in ``journalctl -u punchgate`` after a bad day, judged line by line."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.journal.bad_day import SECRETS, STEADY_S, Day, run_bad_day, run_short_day

# What a person must never have to read: Python's own reprs, errnos and tracebacks.
PYTHON_NOISE = re.compile(
    r"Traceback|\bNone\b|<[\w.]+ object at 0x|\[Errno \d+\]|\b[A-Z]\w*(Error|Exception)\(|"
    r"=\[|=\(|=False\b|=True\b"
)
ADVICE = ("check", "set ", "fix", "free ", "retry", "choose", "remove", "run ", "reconnect", "?")
NAMING_KEYS = ("device", "url", "path", "outbox", "state_dir", "config", "broker")


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    return run_bad_day(tmp_path_factory.mktemp("bad-day"))


def _events(day: Day, name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in day.log.events()
        if e["event"] == name and all(e.get(k) == v for k, v in match.items())
    ]


@pytest.mark.slow
def test_the_day_ends_with_a_clean_stop_and_every_line_is_json(day: Day) -> None:
    assert day.returncode == 0, day.log.tail()
    assert _events(day, "daemon_stopped", clean=True), day.log.tail()
    lines = [x for x in day.log.text() if x.strip()]
    assert lines and all(x.startswith("{") for x in lines), [
        x for x in lines if not x.startswith("{")
    ][:5]


@pytest.mark.slow
def test_no_secret_and_no_python_noise_in_any_line(day: Day) -> None:
    for line in day.log.text():
        for secret in SECRETS:
            assert secret not in line, line
        assert not PYTHON_NOISE.search(line), line


@pytest.mark.slow
def test_every_warning_and_error_names_the_thing_and_says_what_to_do(day: Day) -> None:
    for event in day.log.events():
        if event["level"] not in ("warning", "error", "critical"):
            continue
        text = " ".join(str(v) for k, v in event.items() if k not in ("timestamp", "level"))
        assert any(k in event for k in NAMING_KEYS) or "/" in text, event  # a file or URL
        assert "action" in event or "hint" in event or any(a in text for a in ADVICE), event


@pytest.mark.slow
def test_each_state_change_is_logged_once_and_its_recovery_too(day: Day) -> None:
    assert len(_events(day, "device_unreachable", device="gate-2")) == 1, day.log.tail(80)
    lobby_down = _events(day, "device_unreachable", device="lobby-1")
    lobby_back = _events(day, "device_recovered", device="lobby-1", was="unreachable")
    assert len(lobby_down) == len(lobby_back) == 3, (lobby_down, lobby_back)
    assert _events(day, "device_recovered", was="store_error"), day.log.tail(80)
    lost = _events(day, "broker connection lost")
    assert len(lost) == 1, lost
    assert "Unspecified" not in lost[0]["reason"] and "broker stopped" in lost[0]["reason"], lost
    assert len(_events(day, "connected to broker")) == 2  # after the good reload, after the outage
    assert len(_events(day, "config_reload_rejected")) == 1
    assert len(_events(day, "config_reloaded")) == 1
    assert all(e["level"] == "info" for e in _events(day, "device_recovered"))


@pytest.mark.slow
def test_a_steady_failure_logs_a_bounded_number_of_lines(day: Day) -> None:
    steady = day.log.between(day.phases["steady"], day.phases["steady_end"])
    assert len(steady) <= 2, (STEADY_S, steady)  # the broker refusing, gate-2 gone: retried
    away = day.log.between(day.phases["broker_down"], day.phases["broker_down_end"])
    assert len(away) <= 2, away


@pytest.mark.slow
def test_the_same_event_always_carries_the_same_keys(day: Day) -> None:
    keys: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for event in day.log.events():
        keys[event["event"]].add(tuple(sorted(set(event) - {"event", "level", "timestamp"})))
        assert not re.search(r"\d|/|\(", event["event"]), event  # a name, not a message
    assert {name: shapes for name, shapes in keys.items() if len(shapes) > 1} == {}


def test_the_console_format_shows_values_as_text_without_secrets(tmp_path: Path) -> None:
    day = run_short_day(tmp_path, console=True)
    assert day.returncode == 0
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", x) for x in day.log.text() if x.strip()]
    assert any("config_reload_rejected" in x for x in plain), plain
    for line in plain:
        for secret in SECRETS:
            assert secret not in line, line
        assert not PYTHON_NOISE.search(line), line
    started = next(x for x in plain if "daemon_started" in x)
    assert "devices=lobby-1,gate-2,dock-3" in started, started
