"""The id of a terminal's record never changes across agent versions.

The backend de-duplicates on ids: after an upgrade, a terminal's whole log is often read again
(a reinstall, a lost watermark). If the same bytes gave another id, every punch of the log would
reach HR twice. These ids were computed from fixed wire bytes; a change to decoding, time
conversion or identity that moves one of them needs a migration, not a new expected value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from buffer.identity import punch_id
from drivers.base import Suspect
from drivers.serial.cards import CardTable
from drivers.serial.parsers import LineParser
from drivers.serial.punches import PunchBuilder as SerialBuilder
from drivers.zk import protocol as p
from drivers.zk.punches import PunchBuilder as ZkBuilder
from drivers.zk.records import (
    AttendanceRecord,
    LiveEvent,
    pack_attendance,
    pack_event,
    unpack_events,
)

GATEWAY = "gw-pinned"
LISBON = ZoneInfo("Europe/Lisbon")
WHEN = datetime(2026, 10, 25, 1, 30, 7)  # in Lisbon's DST fold: flagged, the earlier offset
ZK_ID = "01a170ad-e518-8e7d-8294-3b3115b670e5"


@pytest.mark.parametrize("size", [40, 16, 8])
def test_a_zk_log_record_keeps_its_id_in_every_layout(size: int) -> None:
    builder = ZkBuilder("lobby-1", "SN-PINNED", LISBON)
    record = pack_attendance(AttendanceRecord(5, "1042", WHEN, 1, 1), size)
    uid_map = {5: "1042"} if size == 8 else None
    (punch,) = builder.from_log(record, size, uid_map=uid_map)
    assert punch.suspect == {Suspect.TIME_AMBIGUOUS}
    assert punch_id(GATEWAY, punch) == ZK_ID


@pytest.mark.parametrize("size", [32, 12, 36, 52])
def test_a_zk_live_event_of_the_same_punch_has_the_same_id(size: int) -> None:
    builder = ZkBuilder("lobby-1", "SN-PINNED", LISBON)
    events = unpack_events(pack_event(LiveEvent("1042", WHEN, 1, 1), size))
    (punch,) = builder.from_events(events)
    assert punch_id(GATEWAY, punch) == ZK_ID


def test_a_zk_record_with_an_impossible_date_keeps_its_id() -> None:
    record = pack_attendance(
        AttendanceRecord(5, "1042", None, 1, 1),
        40,
        time_raw=p.encode_time_fields(2026, 2, 31, 8, 0, 0),
    )
    (punch,) = ZkBuilder("lobby-1", "SN-PINNED", LISBON).from_log(record, 40)
    assert punch.suspect == {Suspect.TIME_INVALID}
    assert punch_id(GATEWAY, punch) == "e566fed8-feb3-8533-8a6e-c7a31e92a8dd"


def test_a_serial_clock_line_keeps_its_id() -> None:
    parser = LineParser(r"^(?P<card>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$")
    (frame,) = parser.feed(b"0004521837,2026-10-25 01:30:07,OUT\r\n").frames
    builder = SerialBuilder(
        "dock-1", "serial:dock-1", LISBON, "%Y-%m-%d %H:%M:%S", CardTable({"4521837": "1042"})
    )
    punch = builder.build(frame, datetime(2026, 10, 25, 1, 0, 9, tzinfo=UTC))
    assert (punch.employee, punch.suspect) == ("1042", {Suspect.TIME_AMBIGUOUS})
    assert punch_id(GATEWAY, punch) == "01a170ad-e518-82c8-98cf-7c4c61e2c653"
