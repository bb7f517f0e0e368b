"""Punch ids: content-derived for device punches, random for manual ones."""

from __future__ import annotations

import uuid
from dataclasses import replace

from buffer.identity import punch_id, random_id
from drivers.base import Source
from tests.buffer.factory import invalid_time_punch, punch


def test_the_same_record_read_twice_gets_the_same_uuid_shaped_id() -> None:
    first = punch_id("gw-1", punch(5))
    again = punch_id("gw-1", punch(5))
    assert first == again
    parsed = uuid.UUID(first)
    assert str(parsed) == first and parsed.version == 8 and parsed.variant == uuid.RFC_4122


def test_id_depends_on_gateway_serial_user_time_and_state_only() -> None:
    base = punch(5)
    ids = {
        punch_id("gw-1", base),
        punch_id("gw-2", base),
        punch_id("gw-1", replace(base, device_serial="OTHER")),
        punch_id("gw-1", replace(base, employee="999")),
        punch_id("gw-1", replace(base, device_time=punch(6).device_time)),
        punch_id("gw-1", replace(base, state_code=4)),
    }
    assert len(ids) == 6
    # Where it entered punchgate and how it was verified do not change what it is.
    assert punch_id("gw-1", replace(base, source=Source.LIVE, verify_code=15)) == punch_id(
        "gw-1", base
    )


def test_ids_of_later_punches_sort_later_so_the_index_is_appended_to() -> None:
    ids = [punch_id("gw-1", punch(n)) for n in range(50)]
    assert ids == sorted(ids)


def test_an_impossible_date_is_identified_by_its_raw_bytes() -> None:
    a = punch_id("gw-1", invalid_time_punch(b"\x01\x02"))
    assert a == punch_id("gw-1", invalid_time_punch(b"\x01\x02"))
    assert a != punch_id("gw-1", invalid_time_punch(b"\x01\x03"))


def test_manual_ids_are_random_uuid4() -> None:
    a, b = random_id(), random_id()
    assert a != b and uuid.UUID(a).version == 4
