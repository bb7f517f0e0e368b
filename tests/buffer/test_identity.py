"""Punch ids: content-derived for device punches, random for manual ones."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import datetime

from buffer.identity import _sha256, punch_id, random_id
from buffer.ingest import Encoded
from drivers.base import Punch, Source, Suspect
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


# Ids computed before any change to the hot path: a re-read terminal must get these exact ids.
PINNED = {
    "plain": "019cad58-bd80-8384-9f4c-7faf32217ca2",
    "odd": "019cad5c-b138-8e96-b3b4-7d06b95b1cdc",
    "micro": "019cad58-c1e3-8a11-a0de-f752cdc51fe4",
    "pre1970": "00000000-0000-8ce4-9adb-7a42e22e3d0b",
    "card": "019cad59-de90-855a-a74a-57958f794f4d",
    "nocode": "019cad5a-ffa0-8743-9a60-0aee04130051",
    "invalid": "7f39313c-612d-8353-9a1b-d2570ea5a181",
    "fold": "019cad5b-9028-872d-bbd6-cface6fc1f98",
    "latest": "e677d21f-dbff-84af-9740-58cdb5d09976",
}


def _pinned_cases() -> dict[str, Punch]:
    return {
        "plain": punch(0),
        "odd": punch(7),
        "micro": replace(punch(3), device_time=datetime(2026, 3, 2, 7, 0, 1, 123456)),
        "pre1970": replace(punch(1), device_time=datetime(1960, 5, 1, 8, 0)),
        "card": replace(punch(2), employee=None, card="C9"),
        "nocode": replace(punch(4), state_code=None),
        "invalid": invalid_time_punch(),
        "fold": replace(punch(5), suspect=frozenset({Suspect.TIME_AMBIGUOUS})),
        "latest": replace(punch(6), device_time=datetime(9999, 12, 31, 23, 59, 59, 999999)),
    }


def test_ids_of_fixed_punches_never_change_alone_or_in_a_batch() -> None:
    cases = _pinned_cases()
    assert {k: punch_id("gw-1", p) for k, p in cases.items()} == PINNED
    # The batch encoder computes ids on its own fast path: it must agree, row by row.
    for name, p in cases.items():
        assert Encoded("gw-1", [p], "2026-03-02T06:00:00.000000+00:00").ids == [PINNED[name]]
    batch = Encoded("gw-1", list(cases.values()), "2026-03-02T06:00:00.000000+00:00")
    assert batch.ids == list(PINNED.values())


def test_the_hash_the_hot_path_uses_is_sha256() -> None:
    # buffer.identity may pick CPython's own SHA-256 over OpenSSL's for speed: same digests.
    for text in (b"", b"punchgate-id-v1\x1fgw-1", bytes(range(256)) * 3):
        assert _sha256(text).hexdigest() == hashlib.sha256(text).hexdigest()
