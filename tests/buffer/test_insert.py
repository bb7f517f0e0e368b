"""Storing punches: idempotent by id, a sequence never reused, watermarks in the same commit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buffer import Outbox
from buffer.identity import punch_id
from config.errors import DiskFullError, OutboxError, UsageError
from drivers.base import Source
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import invalid_time_punch, punch, punches


def test_reinserting_the_same_punches_inserts_nothing(outbox: Outbox) -> None:
    first = outbox.add_punches(punches(0, 50))
    again = outbox.add_punches(punches(0, 50))
    assert (first.inserted, first.duplicates) == (50, 0)
    assert (again.inserted, again.duplicates) == (0, 50)
    assert again.ids == first.ids == [punch_id(GATEWAY, p) for p in punches(0, 50)]
    assert outbox.stats().pending == 50


def test_a_batch_mixing_new_old_and_repeated_punches_stores_each_once(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    batch = [*punches(5, 10), punch(20), punch(20)]
    result = outbox.add_punches(batch)
    assert (result.inserted, result.duplicates) == (6, 6)
    rows = outbox.list()
    assert [r.seq for r in rows] == list(range(1, 17))  # dense: duplicates take no number
    assert len({r.id for r in rows}) == 16


def test_sequence_numbers_are_never_reused_after_deletes_and_restarts(outbox_path: Path) -> None:
    with Outbox.open(outbox_path, GATEWAY) as box:
        box.add_punches(punches(0, 10))
        box.mark_delivered([r.id for r in box.list()])
        later = datetime(2030, 1, 1, tzinfo=UTC)
        assert box.prune(0, now=later) == 10  # the newest rows are gone too
        assert box.list() == []
    with Outbox.open(outbox_path, GATEWAY) as box:
        box.add_punches(punches(10, 1))
        manual = box.add_manual(punch(11), operator="ana", reason="forgot badge")
        assert [r.seq for r in box.list()] == [11, 12]
        assert manual.seq == 12
        assert box.stats().last_seq == 12


def test_stored_row_keeps_every_field_of_the_punch(outbox: Outbox) -> None:
    p = punch(3)
    received = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)
    outbox.add_punches([p], received_at=received)
    row = outbox.list()[0]
    assert (row.device_id, row.device_serial, row.employee) == ("lobby-1", "SER-LOBBY-1", "103")
    assert row.device_time == p.device_time and row.device_time.tzinfo is None
    assert row.time_utc == p.time_utc and row.time_utc is not None
    assert row.time_utc.utcoffset() is not None
    assert (row.utc_offset_minutes, row.state, row.state_code) == (60, "out", 1)
    assert (row.verify, row.verify_code, row.source, row.kind) == (
        "fingerprint",
        1,
        "device",
        "punch",
    )
    assert (row.delivery, row.attempts, row.received_at) == ("pending", 0, received)
    assert row.gateway_id == GATEWAY and row.suspect == [] and row.raw is None
    data = row.as_dict()
    assert data["time_utc"] == "2026-03-02T06:01:51+00:00"
    assert data["received_at"] == "2026-03-02T09:00:00.123456+00:00"


def test_a_punch_with_an_impossible_date_is_stored_with_flags_and_raw_bytes(
    outbox: Outbox,
) -> None:
    result = outbox.add_punches([invalid_time_punch(b"\xde\xad")])
    row = outbox.get(result.ids[0])
    assert row is not None
    assert row.time_utc is None and row.raw == b"\xde\xad"
    assert row.suspect == ["time_invalid", "unknown_state"]
    assert row.as_dict()["raw"] == "dead"


def test_watermark_and_serial_are_stored_with_the_batch(outbox: Outbox) -> None:
    assert outbox.watermark("lobby-1") is None and outbox.device_serial("lobby-1") is None
    outbox.add_punches(punches(0, 5), watermark={"records": 5, "last": "2026-03-02T07:02:28"})
    assert outbox.watermark("lobby-1") == {"records": 5, "last": "2026-03-02T07:02:28"}
    assert outbox.device_serial("lobby-1") == "SER-LOBBY-1"
    # An empty read still moves the watermark and records the serial seen.
    outbox.add_punches([], device_id="gate-2", watermark={"records": 0}, device_serial="SER-G2")
    assert outbox.watermark("gate-2") == {"records": 0}
    assert outbox.device_serial("gate-2") == "SER-G2"


def test_watermark_is_not_moved_when_its_punches_are_not_stored(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 5), watermark={"records": 5})
    conn = outbox._conn  # fault injection: cap the file at its current size
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DiskFullError):
        outbox.add_punches(punches(5, 2000), watermark={"records": 2005})
    assert outbox.watermark("lobby-1") == {"records": 5}
    assert outbox.stats().pending == 5


@pytest.mark.parametrize("field", ["state_code", "verify_code"])
def test_an_integer_beyond_64_bits_is_an_outbox_error_and_stores_nothing(
    outbox: Outbox, field: str
) -> None:
    """No driver should produce one (the serial driver flags such states), but if one did the
    batch must fail as an OutboxError (what every caller handles), not a bare OverflowError."""
    bad = replace(punch(2), **{field: 2**64})
    with pytest.raises(OutboxError, match=r"64-bit integers.*nothing of this write was stored"):
        outbox.add_punches([punch(1), bad, punch(3)], device_id="lobby-1", watermark={"n": 3})
    assert outbox.stats().pending == 0 and outbox.stats().devices == []
    assert outbox.add_punches(punches(1, 3)).inserted == 3  # the outbox goes on


def test_manual_punch_gets_a_random_id_and_correction_metadata(outbox: Outbox) -> None:
    entered = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    stored = outbox.add_manual(
        punch(1), operator="ana", reason="terminal offline", entered_at=entered
    )
    assert stored.id != punch_id(GATEWAY, punch(1))
    assert (stored.source, stored.kind, stored.operator) == (Source.MANUAL.value, "punch", "ana")
    assert (stored.reason, stored.entered_at) == ("terminal offline", entered)
    twice = outbox.add_manual(punch(1), operator="ana", reason="terminal offline")
    assert twice.id != stored.id  # a person may really punch twice; nothing is merged


def test_voiding_adds_an_event_row_and_deletes_nothing(outbox: Outbox) -> None:
    target = outbox.get(outbox.add_punches([punch(1)]).ids[0])
    assert target is not None
    void = outbox.add_void(target.id, operator="ana", reason="test badge")
    assert (void.kind, void.void_of, void.source, void.operator) == (
        "void",
        target.id,
        "manual",
        "ana",
    )
    assert (void.employee, void.device_time) == (target.employee, target.device_time)
    assert void.seq == target.seq + 1
    assert outbox.get(target.id) == target
    with pytest.raises(UsageError, match="already voided"):
        outbox.add_void(target.id, operator="ana", reason="again")
    with pytest.raises(UsageError, match="no punch"):
        outbox.add_void("00000000-0000-4000-8000-000000000000", operator="ana", reason="x")
    with pytest.raises(UsageError, match="itself a void"):
        outbox.add_void(void.id, operator="ana", reason="x")
    with pytest.raises(UsageError, match="operator and a reason"):
        outbox.add_manual(punch(2), operator="ana", reason="  ")


def test_list_filters_by_device_employee_time_and_pending(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    outbox.add_punches(punches(0, 4, device="gate-2", serial="SER-G2"))
    first = outbox.list()[0]
    outbox.mark_delivered([first.id])
    assert len(outbox.list(device="gate-2")) == 4
    assert {r.employee for r in outbox.list(employee="101")} == {"101"}
    assert first.id not in {r.id for r in outbox.list(pending_only=True)}
    since = punch(8).time_utc
    assert since is not None
    assert {r.device_time for r in outbox.list(since=since, device="lobby-1")} == {
        punch(8).device_time,
        punch(9).device_time,
    }
    newest = outbox.list(limit=3)
    assert [r.seq for r in newest] == [12, 13, 14]
