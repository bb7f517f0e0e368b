"""A manual punch goes to the employee the terminals know, not to a look-alike spelling.

A technician types the id from a badge or a paper sheet ("007", "ab12"); the terminal wrote
"7" and "AB12". Stored as typed, the correction belongs to nobody the backend knows and the
duplicate check against the terminal's own punch misses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.manual import DeviceConfig, ManualRequest, ManualValidator, Online
from buffer import Outbox
from config import Settings, load_settings
from drivers.base import Punch, PunchState, Source, VerifyMethod
from tests.cli.conftest import GATEWAY, write_config

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _offline(_device: DeviceConfig) -> Online:
    return Online(False, "the terminal is switched off")


def _device_punch(employee: str, local: datetime) -> Punch:
    return Punch(
        device_id="lobby-1",
        device_serial="SN-LOBBY",
        employee=employee,
        device_time=local,
        time_utc=local.replace(tzinfo=BERLIN).astimezone(UTC),
        utc_offset_minutes=60,
        state=PunchState.IN,
        state_code=0,
        verify=VerifyMethod.FINGERPRINT,
        verify_code=1,
        source=Source.DEVICE,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = write_config(
        tmp_path / "punchgate.toml",
        state_dir=tmp_path / "state",
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": 1}],
        manual={"max_age": "7d", "duplicate_window": "5m"},
    )
    return load_settings(config)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.db", GATEWAY, disk_reserve_bytes=0) as box:
        # Yesterday the terminal recorded these users as it writes their ids.
        yesterday = datetime(2026, 11, 21, 8, 0)
        box.add_punches(
            [
                _device_punch(e, yesterday + timedelta(minutes=n))
                for n, e in enumerate(["7", "AB12", "1042"])
            ]
        )
        yield box


def _check(settings: Settings, outbox: Outbox, employee: str) -> list[str]:
    validator = ManualValidator(settings, outbox, online=_offline, now=NOW)
    checked = validator.check(
        ManualRequest(employee, "lobby-1", "2026-11-22 08:03", "in", "terminal dead")
    )
    return [p.text() for p in checked.blocking(force=False)]


@pytest.mark.parametrize(
    ("typed", "written"), [("007", "7"), ("0007", "7"), ("ab12", "AB12"), ("Ab12", "AB12")]
)
def test_an_id_the_terminals_write_differently_is_refused_naming_their_spelling(
    settings: Settings, outbox: Outbox, typed: str, written: str
) -> None:
    problems = _check(settings, outbox, typed)
    assert len(problems) == 1
    assert f"employee {typed} " in problems[0] and f" {written} " in problems[0]
    assert "--force" in problems[0]


@pytest.mark.parametrize("typed", ["7", "AB12", "1042", "8", "ab13"])
def test_an_id_as_the_terminals_write_it_or_a_new_one_passes(
    settings: Settings, outbox: Outbox, typed: str
) -> None:
    assert _check(settings, outbox, typed) == []


def test_a_look_alike_id_is_stored_as_typed_with_force(settings: Settings, outbox: Outbox) -> None:
    """Two users "7" and "007" can exist on a terminal with text ids: a person may know better."""
    validator = ManualValidator(settings, outbox, online=_offline, now=NOW)
    checked = validator.check(
        ManualRequest("007", "lobby-1", "2026-11-22 08:03", "in", "terminal dead")
    )
    assert checked.blocking(force=True) == [] and checked.punch is not None
    assert checked.punch.employee == "007"


@pytest.mark.parametrize(
    "typed",
    [
        "1042\u200f",  # right-to-left mark, copied from an Arabic or Hebrew HR screen
        "\u200e1042",  # left-to-right mark
        "10\u200b42",  # zero-width space, from a web page
        "1042\u00ad",  # soft hyphen
        "\ufeff1042",  # a byte order mark pasted with the first cell of a file
        "10\u2060" + "42",  # word joiner
    ],
)
def test_an_id_with_an_invisible_format_character_is_refused(
    settings: Settings, outbox: Outbox, typed: str
) -> None:
    """It looks like 1042 on screen, but is stored as another id that belongs to nobody."""
    problems = _check(settings, outbox, typed)
    assert len(problems) == 1 and "invisible" in problems[0] and "1042" in problems[0]
    assert "--force" not in problems[0]
