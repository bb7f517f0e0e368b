"""Whose card is it: the roster file as HR edits it while the reader runs."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.errors import ConfigError
from drivers.serial import SerialDriver, SerialOptions, build_serial_driver
from drivers.serial.cards import read_roster
from drivers.serial.parsers import LineParser
from tests.drivers.serial.helpers import take

BERLIN = ZoneInfo("Europe/Berlin")
FIXED = datetime(2024, 5, 1, 6, 30, tzinfo=UTC)
TICK = 1_700_000_000_000_000_000  # one mtime value: a file system that counts coarse time


def _driver(roster: Path) -> SerialDriver:
    options = SerialOptions(
        url="loop://", format="wiegand-ascii", roster_file=roster, dedup_window=0
    )
    driver = build_serial_driver("dock-1", options, BERLIN, clock=lambda: FIXED)
    driver.open()
    return driver


def _employee(driver: SerialDriver, card: bytes) -> str | None:
    assert driver.port is not None
    driver.port.write(card + b"\r\n")
    return take(driver.live(5), 1)[0].employee


def _write(roster: Path, text: str, mtime_ns: int) -> None:
    roster.write_text(text, encoding="utf-8")
    os.utime(roster, ns=(mtime_ns, mtime_ns))


def test_a_roster_read_half_written_is_read_again_when_the_write_ends_in_the_same_tick(
    tmp_path: Path,
) -> None:
    """An export script writes the roster while a card is read: the reader saw its first bytes.

    The rest of the write lands within the file system's timestamp resolution (a coarse clock
    tick, 1-2 s on network shares and FAT), so the mtime does not change again. The truncated
    line gave card 1234 to employee "20"; the finished file must be picked up.
    """
    roster = tmp_path / "cards.csv"
    _write(roster, "card,employee\n1234,1999\n", TICK - 10**9)
    driver = _driver(roster)
    try:
        assert _employee(driver, b"1234") == "1999"
        _write(roster, "card,employee\n1234,20", TICK)  # the reader's view mid-write
        assert _employee(driver, b"1234") == "20"
        _write(roster, "card,employee\n1234,2001\n5678,2002\n", TICK)  # the write ends
        assert _employee(driver, b"1234") == "2001"
        assert _employee(driver, b"5678") == "2002"
    finally:
        driver.close()


def test_a_roster_replaced_by_rename_with_its_old_mtime_is_picked_up(tmp_path: Path) -> None:
    """``rsync -t`` or ``cp -p`` of a corrected file keeps the source's mtime, maybe ours."""
    roster = tmp_path / "cards.csv"
    _write(roster, "card,employee\n1234,1999\n", TICK)
    driver = _driver(roster)
    try:
        assert _employee(driver, b"1234") == "1999"
        fixed = tmp_path / "cards.csv.tmp"
        _write(fixed, "card,employee\n1234,2999\n", TICK)
        fixed.replace(roster)
        assert _employee(driver, b"1234") == "2999"
    finally:
        driver.close()


HALL_PATTERN = r"^(?P<employee>\S+)\s+(?P<time>\d{2}:\d{2})\s+(?P<state>\S+)$"  # docs/serial.md


@pytest.mark.parametrize("noise", [b"\x00", b"\x01", b"\x1b", b"\x7f"])
def test_a_control_character_inside_an_employee_id_rejects_the_line(noise: bytes) -> None:
    """Line noise inside a field that the pattern accepts (``\\S+``) made an id like "10\\x0042":
    bound to nobody, and with a NUL refused by PostgreSQL backends, so pending forever."""
    parser = LineParser(HALL_PATTERN, "latin-1", 128)
    result = parser.feed(b"10" + noise + b"42  08:01  C/IN\r\n0042  08:02  C/OUT\r\n")
    assert [f.employee for f in result.frames] == ["0042"]
    assert [r.reason for r in result.rejects] == ["malformed"]


@pytest.mark.parametrize(
    "written",
    [
        "４５２１８３７",  # full-width digits: a roster typed with a Japanese or Chinese IME
        "٤٥٢١٨٣٧",  # Arabic-Indic digits
        "００４５２１８３７",
    ],
)
def test_a_roster_card_number_in_non_ascii_digits_matches_the_card(
    tmp_path: Path, written: str
) -> None:
    """The reader sends ASCII; the card table compares numbers, so both are the same card."""
    roster = tmp_path / "cards.csv"
    roster.write_text(f"card,employee\n{written},1042\n", encoding="utf-8")
    driver = _driver(roster)
    try:
        assert _employee(driver, b"0004521837") == "1042"
    finally:
        driver.close()


def test_a_roster_employee_id_in_non_ascii_digits_is_named_not_loaded(tmp_path: Path) -> None:
    """Stored as written, every punch of that card would belong to an id HR does not have."""
    roster = tmp_path / "cards.csv"
    roster.write_text("card,employee\n4521837,１０４２\n4521838,1043\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_roster(roster, "dock-1")
    (problem,) = caught.value.problems
    assert "line 2" in problem and "'１０４２'" in problem and "1042" in problem
