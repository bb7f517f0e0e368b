"""Delivery state as seq ranges: the outbox agrees with a plain model under any operations."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buffer import Outbox, ledger
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def _ranges(path: Path) -> list[tuple[int, int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT lo, hi, at FROM delivered ORDER BY lo").fetchall()
    finally:
        conn.close()


def _pending_seqs(box: Outbox, after: int = 0) -> list[int]:
    return [seq for seq, _id, _json in box.next_payloads(10_000, after_seq=after, site="s")]


def test_consecutive_deliveries_on_one_day_make_one_range(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 300))
    for first in range(1, 301, 100):
        outbox.mark_delivered_seqs(list(range(first, first + 100)))
    ranges = _ranges(outbox.path)
    assert [(lo, hi) for lo, hi, _at in ranges] == [(1, 300)]
    assert outbox.stats().pending == 0 and outbox.check() == []


def test_acks_out_of_order_leave_the_gap_pending_and_reads_jump_the_ranges(
    outbox: Outbox,
) -> None:
    outbox.add_punches(punches(0, 10))
    outbox.mark_delivered_seqs([7, 8])  # a backend acked a later batch first
    outbox.mark_delivered_seqs([2, 3])
    assert _pending_seqs(outbox) == [1, 4, 5, 6, 9, 10]
    assert _pending_seqs(outbox, after=3) == [4, 5, 6, 9, 10]
    assert [r.seq for r in outbox.next_batch(3, after_seq=5)] == [6, 9, 10]
    outbox.mark_delivered_seqs([4, 5, 6])  # the gap closes: ranges merge across it
    assert [(lo, hi) for lo, hi, _at in _ranges(outbox.path)] == [(2, 8)]
    stats = outbox.stats()
    assert (stats.pending, stats.oldest_pending_seq, stats.last_delivered_seq) == (3, 1, 8)


def test_a_range_never_reaches_past_the_rows_that_exist(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 3))
    assert outbox.mark_delivered_seqs([3, 4, 5, 6]) == 1  # 4-6 have no row yet
    outbox.add_punches(punches(3, 3))  # seqs 4-6 now: born pending, not delivered
    assert _pending_seqs(outbox) == [1, 2, 4, 5, 6]
    assert outbox.check() == []


def test_ranges_of_different_days_stay_apart_and_retention_prunes_only_old_ones(
    outbox_path: Path,
) -> None:
    box = Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0)
    try:
        box.add_punches(punches(0, 6))
        conn = box._db()  # the ledger works inside the caller's transaction
        conn.execute("BEGIN IMMEDIATE")
        ledger.mark(conn, [1, 2], "2026-01-01T10:00:00.000000+00:00")
        ledger.mark(conn, [3, 4], "2026-01-05T10:00:00.000000+00:00")
        conn.execute("UPDATE counters SET value = 2 WHERE name = 'pending'")
        conn.execute("UPDATE counters SET value = 4 WHERE name = 'delivered'")
        conn.execute("COMMIT")
        assert [(lo, hi) for lo, hi, _ in _ranges(outbox_path)] == [(1, 2), (3, 4)]
        now = datetime(2026, 1, 10, tzinfo=UTC)
        assert box.prune(7, now=now) == 2  # delivered on the 1st: older than 7 days
        assert [r.seq for r in box.list(limit=10)] == [3, 4, 5, 6]
        assert box.prune(7, now=now) == 0
        assert box.prune(0, now=now + timedelta(days=1)) == 2  # pending 5, 6 stay
        assert [r.seq for r in box.list(limit=10)] == [5, 6]
        assert _ranges(outbox_path) == []
        stats = box.stats()
        assert (stats.pending, stats.delivered) == (2, 0)
        assert box.check() == []
    finally:
        box.close()


def test_redelivery_from_inside_a_range_splits_it(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    outbox.mark_delivered_seqs(list(range(1, 11)))
    assert outbox.redeliver_from(4) == 7
    assert [(lo, hi) for lo, hi, _ in _ranges(outbox.path)] == [(1, 3)]
    assert _pending_seqs(outbox) == list(range(4, 11))
    assert [r.replayed for r in outbox.next_batch(10)] == [False] * 7  # never marked sent
    assert outbox.stats().last_delivered_seq == 3 and outbox.check() == []


@pytest.mark.parametrize("start", range(1, 12))
def test_redelivery_from_any_position_around_a_range(outbox: Outbox, start: int) -> None:
    outbox.add_punches(punches(0, 10))
    outbox.mark_delivered_seqs(list(range(3, 8)))
    assert outbox.redeliver_from(start) == len([s for s in range(3, 8) if s >= start])
    delivered = [s for s in range(3, 8) if s < start]
    assert _pending_seqs(outbox) == [s for s in range(1, 11) if s not in delivered]
    assert outbox.stats().last_delivered_seq == (delivered[-1] if delivered else 0)
    assert outbox.check() == []


def test_check_reports_overlapping_ranges_and_a_range_past_the_counter(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 4))
    outbox.mark_delivered_seqs([1, 2])
    conn = sqlite3.connect(outbox.path)
    conn.execute("INSERT INTO delivered VALUES (2, 3, '2026-01-01T00:00:00.000000+00:00')")
    conn.execute("INSERT INTO delivered VALUES (9, 12, '2026-01-01T00:00:00.000000+00:00')")
    conn.commit()
    conn.close()
    problems = "\n".join(outbox.check())
    assert "overlaps" in problems
    assert "past the sequence counter" in problems


# One step of the model test: (operation, argument).
_STEP = st.one_of(
    st.tuples(st.just("add"), st.integers(1, 30)),
    st.tuples(st.just("deliver"), st.lists(st.integers(1, 120), max_size=25)),
    st.tuples(st.just("deliver_ids"), st.lists(st.integers(0, 119), max_size=10)),
    st.tuples(st.just("redeliver"), st.integers(1, 120)),
    st.tuples(st.just("fail"), st.lists(st.integers(1, 120), max_size=10)),
    st.tuples(st.just("prune"), st.just(0)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=25))
def test_the_outbox_agrees_with_a_plain_model_of_delivery_state(
    tmp_path_factory: object, steps: list[tuple[str, object]]
) -> None:
    directory = tmp_path_factory.mktemp("ledger")  # type: ignore[attr-defined]
    box = Outbox.open(directory / "outbox.db", GATEWAY, disk_reserve_bytes=0)
    model: dict[int, bool] = {}  # seq -> delivered, for rows that exist
    made = 0
    try:
        for op, arg in steps:
            if op == "add":
                assert isinstance(arg, int)
                box.add_punches(punches(made, arg))
                for seq in range(made + 1, made + arg + 1):
                    model[seq] = False
                made += arg
            elif op == "deliver":
                assert isinstance(arg, list)
                expected = len({s for s in arg if model.get(s) is False})
                assert box.mark_delivered_seqs(arg) == expected
                model.update({s: True for s in arg if s in model})
            elif op == "deliver_ids":
                assert isinstance(arg, list)
                rows = {r.seq: r.id for r in box.list(limit=1000)}
                seqs = [s for s in sorted(rows) if s - 1 in arg]
                expected = len([s for s in seqs if not model[s]])
                assert box.mark_delivered([rows[s] for s in seqs]) == expected
                model.update(dict.fromkeys(seqs, True))
            elif op == "redeliver":
                assert isinstance(arg, int)
                expected = len([s for s, d in model.items() if d and s >= arg])
                assert box.redeliver_from(arg) == expected
                model.update({s: False for s in model if s >= arg})
            elif op == "fail":
                assert isinstance(arg, list)
                box.mark_failed_seqs(arg, "refused")
            else:
                expected = len([s for s, d in model.items() if d])
                now = datetime.now(UTC) + timedelta(days=2)
                assert box.prune(0, now=now) == expected
                model = {s: d for s, d in model.items() if not d}
            pending = sorted(s for s, d in model.items() if not d)
            assert _pending_seqs(box) == pending
            states = {r.seq: r.delivery == "delivered" for r in box.list(limit=10_000)}
            assert states == model
            stats = box.stats()
            assert (stats.pending, stats.delivered) == (len(pending), len(model) - len(pending))
            assert stats.oldest_pending_seq == (pending[0] if pending else None)
            # Where a page of 3 pending rows ends (two pages are read at once from there).
            assert box.page_end(3, 0) == (pending[2] if len(pending) >= 3 else None)
            if len(pending) >= 4:
                assert box.page_end(1, pending[2]) == pending[3]
            assert box.check(full=False) == []
    finally:
        box.close()
