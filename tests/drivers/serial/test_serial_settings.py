"""The ``kind = "serial"`` settings: every mistake is named with its key and the way out."""

from __future__ import annotations

from typing import Any

import pytest

from config.errors import ConfigError
from config.loader import parse_settings
from config.settings import SerialDeviceSettings


def problems(**device: Any) -> list[str]:
    data = {
        "agent": {"gateway_id": "gw-1"},
        "devices": [{"id": "dock-1", "kind": "serial", "url": "/dev/ttyUSB0", **device}],
    }
    with pytest.raises(ConfigError) as info:
        parse_settings(data, "site.toml")
    return info.value.problems


def test_defaults_are_the_documented_ones() -> None:
    data = {
        "agent": {"gateway_id": "gw-1"},
        "devices": [{"id": "gate", "kind": "serial", "url": "loop://", "format": "em4100"}],
    }
    (device,) = parse_settings(data, "site.toml").devices
    assert isinstance(device, SerialDeviceSettings)
    assert (device.baudrate, device.bytesize, device.parity, device.stopbits) == (9600, 8, "N", 1)
    assert (device.dedup_window, device.max_line, device.serial) == (3.0, 512, None)


def test_lines_needs_a_pattern_with_an_id_group() -> None:
    (problem,) = problems(format="lines")
    assert problem.startswith("site.toml: devices[0]: format = 'lines' needs a pattern")
    (problem,) = problems(format="lines", pattern=r"(?P<who>\d+)")
    assert "pattern needs a named group 'employee' or 'card'" in problem
    (problem,) = problems(format="lines", pattern=r"(?P<employee>\d+")
    assert "pattern is not a valid regular expression" in problem


def test_em4100_takes_no_pattern_and_wiegand_patterns_need_a_card_group() -> None:
    (problem,) = problems(format="em4100", pattern=r"(?P<card>\d+)")
    assert "pattern is not used with format = 'em4100'; remove it" in problem
    (problem,) = problems(format="wiegand-ascii", pattern=r"(?P<employee>\d+)")
    assert "a wiegand-ascii pattern needs a named group 'card'" in problem


def test_encoding_time_format_and_cards_are_checked() -> None:
    (problem,) = problems(format="em4100", encoding="klingon")
    assert problem.startswith("site.toml: devices[0].encoding: 'klingon' is not a text encoding")
    (problem,) = problems(format="em4100", time_format="%Y-%m-%d %Q")
    assert problem.startswith("site.toml: devices[0].time_format: '%Y-%m-%d %Q' is not a usable")
    (problem,) = problems(format="em4100", cards={"1234": " "})
    assert "devices[0].cards: card '1234' -> ' ': card and employee must not be empty" in problem


def test_line_settings_are_limited_to_what_pyserial_accepts() -> None:
    found = problems(format="em4100", parity="X", bytesize=9, stopbits=3)
    assert {p.split(":")[1].strip() for p in found} == {
        "devices[0].parity",
        "devices[0].bytesize",
        "devices[0].stopbits",
    }
