"""The serial driver over pyserial's ``loop://``: punches, rejects, dedup, cards, errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.errors import ConfigError, DeviceUnavailable
from drivers.base import Driver, PunchState, Source, Suspect, VerifyMethod
from drivers.serial import SerialDriver, SerialOptions, build_serial_driver, serial_options
from drivers.serial.parsers import em4100_frame
from tests.drivers.serial.helpers import events, take

BERLIN = ZoneInfo("Europe/Berlin")
CLOCK_PATTERN = r"^(?P<employee>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$"
FIXED = datetime(2024, 5, 1, 6, 30, tzinfo=UTC)


def loop_driver(**options: Any) -> SerialDriver:
    driver = build_serial_driver(
        "dock-1", SerialOptions(url="loop://", **options), BERLIN, clock=lambda: FIXED
    )
    driver.open()
    return driver


def write(driver: SerialDriver, data: bytes) -> None:
    assert driver.port is not None
    driver.port.write(data)


def test_serial_driver_implements_the_driver_protocol() -> None:
    driver = loop_driver(format="em4100")
    assert isinstance(driver, Driver)
    assert driver.read_new({"x": 1}) == ([], {"x": 1})
    assert driver.read_new(None) == ([], {})
    info = driver.info()
    assert info.serial == "serial:dock-1"
    assert info.extra["port_open"] is True and info.extra["url"] == "loop://"
    driver.close()
    assert driver.info().extra["port_open"] is False
    driver.close()  # closing twice is harmless


def test_configured_serial_is_the_punch_identity() -> None:
    driver = loop_driver(format="wiegand-ascii", serial="dock-clock-7")
    write(driver, b"1234\r\n")
    (punch,) = take(driver.live(5), 1)
    assert punch.device_serial == "dock-clock-7" == driver.info().serial


def test_time_clock_lines_become_punches_and_garbage_is_counted(
    logs: list[dict[str, Any]],
) -> None:
    driver = loop_driver(pattern=CLOCK_PATTERN, max_line=64)
    write(
        driver,
        b"1001,2024-01-15 08:00:00,IN\r\n"
        b"*** CLOCK READY ***\r\n" + b"#" * 500 + b"\r\n1002,2024-01-15 17:00:00,OUT\n",
    )
    first, second = take(driver.live(5), 2)
    assert (first.employee, first.state, first.source) == ("1001", PunchState.IN, Source.LIVE)
    assert first.device_time == datetime(2024, 1, 15, 8, 0)
    assert first.time_utc == datetime(2024, 1, 15, 7, 0, tzinfo=UTC)
    assert (second.employee, second.state) == ("1002", PunchState.OUT)
    assert driver.stats.rejected == {"no_match": 1, "overlong": 1}
    rejected = events(logs, "serial frame rejected")
    assert [e["log_level"] for e in rejected] == ["debug", "debug"]
    assert rejected[0]["raw"] == b"*** CLOCK READY ***".hex()


def test_lines_without_time_use_the_injected_receive_clock() -> None:
    driver = loop_driver(pattern=r"^(?P<employee>\d+) (?P<state>\S+)$")
    write(driver, b"42 Check-Out\r\n")
    (punch,) = take(driver.live(5), 1)
    assert punch.time_utc == FIXED
    assert punch.device_time == datetime(2024, 5, 1, 8, 30)
    assert punch.state is PunchState.OUT


def test_card_reader_maps_cards_drops_double_reads_and_keeps_unknown_cards(
    logs: list[dict[str, Any]],
) -> None:
    driver = loop_driver(format="em4100", cards={"0455884110": "1001"}, dedup_window=60)
    known, unknown = em4100_frame("0A1B2C3D4E"), em4100_frame("00000000FF")
    broken = known[:11] + b"00" + known[13:]  # wrong checksum
    write(driver, known * 3 + b"\x00\xff line noise \xfe" + broken + unknown + known)
    first, second = take(driver.live(5), 2)
    assert (first.employee, first.card, first.verify) == ("1001", "0A1B2C3D4E", VerifyMethod.CARD)
    assert second.employee is None and second.card == "00000000FF"
    assert second.suspect == {Suspect.UNKNOWN_CARD}
    assert list(driver.live(0.3)) == []  # the last read of the known card was a double read
    assert driver.stats.duplicates == 3
    assert driver.stats.rejected == {"noise": 1, "checksum": 1}
    assert driver.stats.frames == 5 and driver.stats.punches == 2
    (suspect,) = events(logs, "suspect punch kept")
    assert suspect["card"] == "00000000FF" and suspect["flags"] == ["unknown_card"]
    (summary,) = events(logs, "serial frames rejected")
    assert summary["new"] == 2 and "baudrate" in summary["hint"]


CARD_CLOCK_PATTERN = r"^(?P<card>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$"


def test_a_card_clock_replaying_its_buffer_in_one_burst_keeps_every_punch() -> None:
    """A clock that prints the time with the card: double reads are judged on the printed
    times. Its stored punches, sent in one burst after a reconnect, arrive within the window
    but were made hours apart (or, after the clock was set back, an hour earlier)."""
    driver = loop_driver(pattern=CARD_CLOCK_PATTERN, cards={"77": "1001"}, dedup_window=3)
    write(
        driver,
        b"77,2024-01-15 08:00:00,IN\r\n"
        b"77,2024-01-15 08:00:02,IN\r\n"  # held against the reader: a double read
        b"77,2024-01-15 08:00:02,IN\r\n"  # the same line twice: a double read
        b"77,2024-01-15 13:00:00,IN\r\n"  # back from lunch, replayed in the same burst
        b"77,2024-01-15 12:00:00,IN\r\n",  # the clock was set back an hour meanwhile
    )
    punches = take(driver.live(5), 3)
    assert [p.device_time.hour for p in punches] == [8, 13, 12]
    assert {p.employee for p in punches} == {"1001"}
    assert list(driver.live(0.3)) == []
    assert driver.stats.duplicates == 2 and driver.stats.punches == 3


def test_a_card_presented_again_after_the_window_is_a_new_punch() -> None:
    driver = loop_driver(format="wiegand-ascii", dedup_window=0)
    write(driver, b"77\r\n77\r\n")
    assert [p.card for p in take(driver.live(5), 2)] == ["77", "77"]


def test_an_idle_line_yields_nothing_and_live_returns() -> None:
    driver = loop_driver(format="em4100")
    assert list(driver.live(0.3)) == []
    assert driver.stats.bytes == 0 and driver.connected


def test_roster_file_maps_cards_and_an_edit_is_picked_up(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    roster = tmp_path / "cards.csv"
    roster.write_text("card,employee\n1234,2001\n", encoding="utf-8")
    driver = loop_driver(format="wiegand-ascii", roster_file=roster, dedup_window=0)
    write(driver, b"1234\r\n")
    assert take(driver.live(5), 1)[0].employee == "2001"
    roster.write_text("card,employee\n1234,2002\n", encoding="utf-8")
    write(driver, b"1234\r\n")
    assert take(driver.live(5), 1)[0].employee == "2002"
    roster.write_text("card,employee\n1234\n", encoding="utf-8")  # a broken edit
    write(driver, b"1234\r\n")
    assert take(driver.live(5), 1)[0].employee == "2002"  # the previous table stays
    (error,) = events(logs, "roster file not reloaded; keeping the previous cards")
    assert "cards.csv: 1 problem(s)" in error["error"] and "line 2" in error["problems"][0]


def test_open_names_a_missing_roster_file(tmp_path: Path) -> None:
    driver = build_serial_driver(
        "dock-1",
        SerialOptions(url="loop://", format="em4100", roster_file=tmp_path / "no.csv"),
        BERLIN,
    )
    with pytest.raises(ConfigError, match=r"dock-1: roster_file .*no.csv: no such file"):
        driver.open()


def test_open_says_what_to_check_when_the_port_is_missing(tmp_path: Path) -> None:
    driver = build_serial_driver(
        "dock-1", SerialOptions(url=str(tmp_path / "ttyUSB9"), format="em4100"), BERLIN
    )
    with pytest.raises(DeviceUnavailable) as info:
        driver.open()
    assert str(info.value) == (
        f"dock-1 ({tmp_path / 'ttyUSB9'}): port not found: "
        "check the cable/USB adapter and the url in the config"
    )
    assert not driver.connected


def test_an_unknown_url_scheme_is_a_config_error() -> None:
    driver = build_serial_driver("dock-1", SerialOptions(url="bogus://x", format="em4100"), BERLIN)
    with pytest.raises(ConfigError, match=r"dock-1 \(bogus://x\): .*fix the url"):
        driver.open()


def test_a_lines_device_without_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dock-1: format 'lines' needs a pattern"):
        build_serial_driver("dock-1", SerialOptions(url="loop://"), BERLIN)


def test_a_bytes_codec_as_encoding_is_a_config_error_not_a_reader_that_raises() -> None:
    with pytest.raises(ConfigError, match="dock-1: 'hex' is not a text encoding"):
        build_serial_driver(
            "dock-1", SerialOptions(url="loop://", format="wiegand-ascii", encoding="hex"), BERLIN
        )


def test_options_come_from_a_settings_dump_ignoring_other_keys() -> None:
    options = serial_options(
        {
            "id": "dock-1",
            "kind": "serial",
            "url": "loop://",
            "format": "em4100",
            "cards": {"1": "2"},
            "roster_file": "/etc/punchgate/cards.csv",
            "pattern": None,
            "poll_interval": 30.0,
        }
    )
    assert options == SerialOptions(
        url="loop://",
        format="em4100",
        cards={"1": "2"},
        roster_file=Path("/etc/punchgate/cards.csv"),
    )


def test_a_noisy_line_is_summarised_at_most_once_a_minute(logs: list[dict[str, Any]]) -> None:
    skew = [0.0]
    driver = SerialDriver(
        "dock-1",
        SerialOptions(url="loop://", format="em4100"),
        BERLIN,
        monotonic=lambda: time.monotonic() + skew[0],
    )
    driver.open()
    for _ in range(3):
        write(driver, b"hiss")
        assert list(driver.live(0.2)) == []
    assert driver.stats.rejected_total == 0  # noise runs end at the next STX (or 64 bytes)
    write(driver, b"\x02")
    assert list(driver.live(0.2)) == []
    for _ in range(2):
        write(driver, b"crackle\x02")
        assert list(driver.live(0.2)) == []
    assert driver.stats.rejected == {"noise": 1, "partial": 2}
    assert [e["new"] for e in events(logs, "serial frames rejected")] == [1]
    skew[0] += 61  # a minute later the next summary covers everything since the last one
    write(driver, b"pop\x02")
    assert list(driver.live(0.2)) == []
    assert [e["new"] for e in events(logs, "serial frames rejected")] == [1, 3]
