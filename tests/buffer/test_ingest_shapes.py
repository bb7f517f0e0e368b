"""Every shape of device punch is stored exactly, whichever fast path the batch takes."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buffer import Outbox, StoredPunch
from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punch, punches

_counter = itertools.count()
_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


def _assert_stored(row: StoredPunch | None, p: Punch) -> None:
    assert row is not None
    assert (row.device_id, row.device_serial, row.employee, row.card) == (
        p.device_id,
        p.device_serial,
        p.employee,
        p.card,
    )
    assert row.device_time == p.device_time
    assert row.time_utc == p.time_utc
    assert (row.utc_offset_minutes, row.state, row.state_code) == (
        p.utc_offset_minutes,
        p.state.value,
        p.state_code,
    )
    assert (row.verify, row.verify_code, row.source) == (
        p.verify.value,
        p.verify_code,
        p.source.value,
    )
    assert row.suspect == sorted(s.value for s in p.suspect)
    assert row.raw == p.raw and row.gateway_id == GATEWAY and row.kind == "punch"


@st.composite
def device_punches(draw: st.DrawFn) -> Punch:
    n = next(_counter)
    local = datetime(2026, 1, 1) + timedelta(seconds=draw(st.integers(0, 10**8)))
    offset = draw(st.none() | st.integers(-720, 840))
    suspect = draw(st.frozensets(st.sampled_from(list(Suspect)), max_size=3))
    has_time = draw(st.booleans())
    return Punch(
        device_id=draw(st.sampled_from(["lobby-1", "gate-2", "it's-3"])),
        device_serial=draw(_text) + f"#{n}",  # unique: no two examples share an id
        employee=draw(st.none() | _text),
        device_time=local,
        time_utc=(local - timedelta(minutes=offset or 0)).replace(tzinfo=UTC) if has_time else None,
        utc_offset_minutes=offset,
        state=draw(st.sampled_from(list(PunchState))),
        state_code=draw(st.none() | st.integers(0, 255)),
        verify=draw(st.sampled_from(list(VerifyMethod))),
        verify_code=draw(st.none() | st.integers(0, 255)),
        source=draw(st.sampled_from([Source.DEVICE, Source.LIVE])),
        card=draw(st.none() | _text),
        suspect=suspect,
        raw=draw(st.none() | st.binary(min_size=1, max_size=40)),
    )


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(device_punches(), min_size=1, max_size=8))
def test_any_batch_of_punches_round_trips(
    tmp_path_factory: pytest.TempPathFactory, batch: list[Punch]
) -> None:
    path = tmp_path_factory.getbasetemp() / "shapes" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        result = box.add_punches(batch, device_id=batch[0].device_id, watermark={"n": len(batch)})
        assert result.inserted == len(set(result.ids))
        for pid, p in zip(result.ids, batch, strict=True):
            _assert_stored(box.get(pid), p)
        assert box.check(full=False) == []


def test_quotes_and_nul_characters_in_device_values_are_stored_verbatim(outbox: Outbox) -> None:
    quoted = [replace(p, device_id="o'hare-1", device_serial="S'N\"1;--") for p in punches(0, 3)]
    nul = [replace(p, device_serial="SER\x00X") for p in punches(10, 2)]
    ids = outbox.add_punches(quoted).ids + outbox.add_punches(nul).ids
    for pid, p in zip(ids, quoted + nul, strict=True):
        _assert_stored(outbox.get(pid), p)
    assert outbox.device_serial("o'hare-1") == "S'N\"1;--"


def test_a_batch_from_several_terminals_keeps_each_rows_device(outbox: Outbox) -> None:
    mixed = [
        *punches(0, 2),
        *punches(0, 2, device="gate-2", serial="SER-G2", source=Source.LIVE),
        replace(punch(5), card="0004711", employee=None, verify=VerifyMethod.CARD),
    ]
    result = outbox.add_punches(mixed)
    assert result.inserted == 5
    for pid, p in zip(result.ids, mixed, strict=True):
        _assert_stored(outbox.get(pid), p)
    assert {d.device_id: d.last_seq for d in outbox.stats().devices} == {"gate-2": 4, "lobby-1": 5}


def test_a_punch_with_a_non_utc_aware_time_is_stored_in_utc(outbox: Outbox) -> None:
    plus_two = timezone(timedelta(hours=2))
    p = replace(punch(1), time_utc=datetime(2026, 3, 2, 9, 0, tzinfo=plus_two))
    row = outbox.get(outbox.add_punches([p]).ids[0])
    assert row is not None and row.time_utc == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    assert row.time_utc.utcoffset() == timedelta(0)
    assert row.as_dict()["time_utc"] == "2026-03-02T07:00:00+00:00"


def test_stored_punch_is_frozen(outbox: Outbox, tmp_path: Path) -> None:
    row = outbox.get(outbox.add_punches([punch(1)]).ids[0])
    assert row is not None
    with pytest.raises(AttributeError):
        row.employee = "someone else"  # type: ignore[misc]
