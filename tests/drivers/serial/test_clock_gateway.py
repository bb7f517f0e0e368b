"""Serial punches stamped by the gateway's clock while it is not set (booted in 1970, NTP not
answered yet) are kept, but flagged: their time is the gateway's wrong one."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from drivers.base import Suspect
from drivers.serial.cards import CardTable, em4100_aliases
from drivers.serial.parsers import Frame
from drivers.serial.punches import PunchBuilder

BERLIN = ZoneInfo("Europe/Berlin")
BOOTED_IN_1970 = datetime(1970, 1, 1, 0, 3, 12, tzinfo=UTC)


def builder(fmt: str) -> PunchBuilder:
    return PunchBuilder("dock-1", "serial:dock-1", BERLIN, fmt, CardTable(None), em4100_aliases)


@pytest.mark.parametrize(
    ("fmt", "printed"),
    [
        ("%Y-%m-%d %H:%M:%S", None),  # a card reader prints no time: the gateway's is used
        ("%H:%M", "01:02"),  # a clock printing no date: the gateway's date completes it
        ("%d/%m %H:%M", "01/01 01:02"),  # no year: the gateway's year completes it
    ],
)
def test_a_punch_dated_by_an_unset_gateway_clock_is_flagged(fmt: str, printed: str | None) -> None:
    frame = Frame(raw=b"0042 08:01", employee="0042", time=printed, state="IN")
    punch = builder(fmt).build(frame, BOOTED_IN_1970)
    assert punch.device_time.year == 1970  # kept as read: nothing is invented
    assert Suspect.CLOCK_DRIFT in punch.suspect


def test_a_punch_dated_by_a_set_gateway_clock_is_not_flagged() -> None:
    frame = Frame(raw=b"0042", employee="0042", state="IN")
    punch = builder("%Y-%m-%d %H:%M:%S").build(frame, datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    assert punch.suspect == frozenset()
