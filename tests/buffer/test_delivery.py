"""The delivery API the MQTT worker uses: batches in seq order, marks, replays, redelivery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from buffer import Outbox
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def test_next_batch_returns_pending_rows_in_seq_order_bounded(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 30))
    batch = outbox.next_batch(10)
    assert [r.seq for r in batch] == list(range(1, 11))
    assert [r.seq for r in outbox.next_batch(10, after_seq=25)] == [26, 27, 28, 29, 30]
    outbox.mark_delivered([r.id for r in batch[2:5]])
    assert [r.seq for r in outbox.next_batch(5)] == [1, 2, 6, 7, 8]


def test_next_batch_respects_max_bytes_but_always_returns_one_row(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 20))
    assert 1 < len(outbox.next_batch(20, max_bytes=3000)) < 20
    assert len(outbox.next_batch(20, max_bytes=1)) == 1
    with pytest.raises(ValueError):
        outbox.next_batch(0)


def test_next_batch_holds_no_lock_after_it_returns(outbox: Outbox, outbox_path: Path) -> None:
    outbox.add_punches(punches(0, 10))
    batch = outbox.next_batch(5)
    other = sqlite3.connect(outbox_path, timeout=0, isolation_level=None)
    try:
        # EXCLUSIVE would fail at once (timeout 0) if any read or write lock were still held.
        other.execute("BEGIN EXCLUSIVE")
        other.execute("COMMIT")
    finally:
        other.close()
    assert outbox.mark_delivered([r.id for r in batch]) == 5


def test_mark_delivered_counts_only_pending_rows_and_updates_stats(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    ids = [r.id for r in outbox.next_batch(4)]
    assert outbox.mark_delivered(ids) == 4
    assert outbox.mark_delivered(ids) == 0  # a late duplicate PUBACK changes nothing
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.last_delivered_seq) == (6, 4, 4)
    row = outbox.get(ids[0])
    assert row is not None and row.delivery == "delivered" and row.delivered_at is not None
    assert outbox.check() == []


def test_attempts_count_failures_and_keep_the_last_error(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 4))
    a, b, c, d = (r.id for r in outbox.next_batch(4))
    outbox.mark_sent([a, b])
    outbox.mark_failed([a], "PUBACK timeout after 60s")
    outbox.mark_failed([c], "broker unreachable")  # never published: still a failed attempt
    outbox.mark_sent([a])
    outbox.mark_failed([a], "connection lost")
    rows = {r.id: r for r in outbox.next_batch(4)}
    assert (rows[a].attempts, rows[a].last_error, rows[a].replayed) == (
        2,
        "connection lost",
        True,
    )
    assert (rows[b].attempts, rows[b].last_error, rows[b].replayed) == (0, None, True)
    assert (rows[c].attempts, rows[c].last_error) == (1, "broker unreachable")
    assert rows[c].replayed  # offered below the sent mark, and a failed attempt besides
    assert (rows[d].attempts, rows[d].replayed) == (0, False)
    assert rows[a].as_dict()["replayed"] is True


def test_a_delivered_row_is_not_marked_failed(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 2))
    a, b = (r.id for r in outbox.next_batch(2))
    outbox.mark_delivered([a])
    assert outbox.mark_failed([a, b], "late failure report") == 1
    row = outbox.get(a)
    assert row is not None and (row.attempts, row.last_error) == (0, None)


def test_rows_in_flight_when_the_process_died_are_offered_again(outbox_path: Path) -> None:
    box = Outbox.open(outbox_path, GATEWAY)
    box.add_punches(punches(0, 10))
    in_flight = box.next_batch(6)
    box.mark_sent([r.id for r in in_flight])
    box.mark_delivered([r.id for r in in_flight[:2]])  # PUBACK for two, then the crash
    box._conn.close()  # type: ignore[union-attr]  # simulate death: no orderly close
    with Outbox.open(outbox_path, GATEWAY) as again:
        offered = again.next_batch(100)
        assert [r.seq for r in offered] == list(range(3, 11))
        assert [r.replayed for r in offered[:4]] == [True] * 4
        assert not any(r.replayed for r in offered[4:])
        assert [r.id for r in offered[:4]] == [r.id for r in in_flight[2:]]  # same ids


def test_redeliver_from_makes_delivered_rows_pending_again(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    outbox.mark_delivered([r.id for r in outbox.next_batch(8)])
    assert outbox.redeliver_from(5) == 4
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.last_delivered_seq) == (6, 4, 4)
    assert [r.seq for r in outbox.next_batch(10)] == [5, 6, 7, 8, 9, 10]
    assert outbox.redeliver_from(100) == 0
    assert outbox.check() == []
