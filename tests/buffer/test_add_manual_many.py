"""``Outbox.add_manual_many``: a batch of correction punches is stored all or nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from config.errors import OutboxError, UsageError
from drivers.base import Punch, PunchState, Source, VerifyMethod


def manual_punch(employee: str, minute: int) -> Punch:
    local = datetime(2026, 11, 20, 8, minute)
    return Punch(
        device_id="lobby-1",
        device_serial="SER1",
        employee=employee,
        device_time=local,
        time_utc=(local - timedelta(hours=1)).replace(tzinfo=UTC),
        utc_offset_minutes=60,
        state=PunchState.IN,
        verify=VerifyMethod.MANUAL,
        source=Source.MANUAL,
    )


def test_batch_is_stored_with_dense_seqs_and_audit_fields(tmp_path: Path) -> None:
    entered = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    with Outbox.open(tmp_path / "outbox.db", "gw") as outbox:
        stored = outbox.add_manual_many(
            [(manual_punch("1", 1), "paper sheet A"), (manual_punch("2", 2), "paper sheet B")],
            operator="alice",
            entered_at=entered,
        )
        assert [s.seq for s in stored] == [1, 2]
        assert [s.reason for s in stored] == ["paper sheet A", "paper sheet B"]
        assert {(s.source, s.operator, s.entered_at) for s in stored} == {
            ("manual", "alice", entered)
        }
        assert outbox.stats().pending == 2
        assert outbox.check() == []


def test_a_row_failing_half_way_leaves_the_outbox_unchanged(tmp_path: Path) -> None:
    broken = replace(manual_punch("3", 3), device_id=None)  # type: ignore[arg-type]
    with Outbox.open(tmp_path / "outbox.db", "gw") as outbox:
        outbox.add_manual(manual_punch("0", 0), operator="bob", reason="before")
        with pytest.raises(OutboxError):
            outbox.add_manual_many(
                [(manual_punch("1", 1), "ok"), (manual_punch("2", 2), "ok"), (broken, "bad")],
                operator="alice",
            )
        assert [p.reason for p in outbox.list()] == ["before"]
        assert outbox.stats().pending == 1 and outbox.stats().last_seq == 1
        assert outbox.check() == []
        after = outbox.add_manual(manual_punch("4", 4), operator="bob", reason="after")
        assert after.seq == 2  # no gap left by the rolled-back batch


def test_a_batch_without_operator_or_with_an_empty_reason_is_refused(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "outbox.db", "gw") as outbox:
        with pytest.raises(UsageError):
            outbox.add_manual_many([(manual_punch("1", 1), "x")], operator=" ")
        with pytest.raises(UsageError):
            outbox.add_manual_many([(manual_punch("1", 1), "")], operator="alice")
        assert outbox.list() == []
