"""A serial line's suspect punches: said once per kind, not one INFO line per punch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from drivers.base import Suspect
from drivers.serial import SerialOptions, build_serial_driver
from drivers.serial.parsers import em4100_frame
from tests.drivers.serial.helpers import events, take


def test_unknown_cards_all_day_log_one_info_line_not_one_per_punch(
    logs: list[dict[str, Any]],
) -> None:
    driver = build_serial_driver(
        "dock-1",
        SerialOptions(url="loop://", format="em4100", cards={"0455884110": "1001"}),
        ZoneInfo("UTC"),
        clock=lambda: datetime(2024, 5, 1, 6, 30, tzinfo=UTC),
    )
    driver.open()
    assert driver.port is not None
    driver.port.write(b"".join(em4100_frame(f"00000000{n:02X}") for n in range(1, 31)))
    punches = take(driver.live(5), 30)
    driver.close()
    assert all(p.suspect == {Suspect.UNKNOWN_CARD} for p in punches)
    said = [e for e in events(logs, "suspect punch kept") if e["log_level"] != "debug"]
    assert len(said) == 1, said
    assert said[0]["flags"] == ["unknown_card"] and "card" in said[0]
    assert len(events(logs, "suspect punch kept")) == 30  # the rest at debug, for --debug
