"""docs/serial.md is tested: every TOML example validates and builds a working driver."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.loader import parse_settings
from config.settings import SerialDeviceSettings
from drivers.serial import SerialDriver, build_serial_driver, serial_options
from drivers.serial.cards import read_roster

DOC = Path(__file__).resolve().parents[3] / "docs" / "serial.md"
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
AGENT = {"agent": {"gateway_id": "doc-gw"}}


def fenced(lang: str) -> list[str]:
    return [
        m.group(2) for m in FENCE.finditer(DOC.read_text(encoding="utf-8")) if m.group(1) == lang
    ]


@pytest.mark.parametrize("text", fenced("toml"))
def test_every_toml_example_validates_and_builds_a_driver(text: str) -> None:
    settings = parse_settings({**AGENT, **tomllib.loads(text)}, "docs/serial.md")
    (device,) = settings.devices
    assert isinstance(device, SerialDeviceSettings)
    driver = build_serial_driver(
        device.id, serial_options(device.model_dump()), settings.device_timezone(device)
    )
    assert isinstance(driver, SerialDriver) and driver.options.url == device.url


def test_the_doc_shows_every_format() -> None:
    formats = {tomllib.loads(t)["devices"][0]["format"] for t in fenced("toml")}
    assert formats == {"lines", "em4100", "wiegand-ascii"}


def test_the_roster_example_reads(tmp_path: Path) -> None:
    (csv_text,) = fenced("csv")
    roster = tmp_path / "cards.csv"
    roster.write_text(csv_text, encoding="utf-8")
    assert read_roster(roster) == {"4521837": "1001", "A1B2C3D4E": "1002"}


def test_the_documented_open_errors_are_the_ones_the_driver_gives(tmp_path: Path) -> None:
    (text,) = fenced("text")
    driver = build_serial_driver(
        "dock-1", serial_options({"url": "/dev/ttyUSB0", "format": "em4100"}), ZoneInfo("UTC")
    )
    from drivers.serial.port import explain_open_error

    assert f"dock-1 (/dev/ttyUSB0): {explain_open_error(FileNotFoundError(2, 'x'))}" in text
    assert f"dock-1 (/dev/ttyUSB0): {explain_open_error(PermissionError(13, 'x'))}" in text
    refused = explain_open_error(ConnectionRefusedError("Connection refused"))
    assert f"gate-2 (socket://10.0.0.30:4001): {refused}" in text
    assert driver.info().serial == "serial:dock-1"
