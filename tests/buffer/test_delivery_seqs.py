"""The delivery worker's hot path: pending rows as SQL-built JSON, marks by sequence number."""

from __future__ import annotations

import json

from buffer import Outbox
from buffer.ledger import seq_runs
from tests.buffer.factory import punches


def test_seq_runs_cover_exactly_the_given_seqs() -> None:
    assert seq_runs([]) == []
    assert seq_runs([5, 3, 4, 9, 10, 12, 3]) == [(3, 5), (9, 10), (12, 12)]


def test_marking_by_seqs_touches_only_those_rows_and_keeps_counters(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    outbox.mark_delivered([outbox.next_batch(10)[4].id])  # seq 5 delivered already
    # Seq 3 is not in the batch (as if skipped): a range must not swallow it.
    assert outbox.mark_sent_ahead(6, 0) == 6
    assert outbox.mark_delivered_seqs([1, 2, 4, 5, 6]) == 4
    rows = {r.seq: r for r in outbox.list(limit=100)}
    assert {s for s, r in rows.items() if r.delivery == "delivered"} == {1, 2, 4, 5, 6}
    assert rows[3].delivery == "pending" and rows[3].delivered_at is None
    assert [r.replayed for s, r in sorted(rows.items())] == [True] * 6 + [False] * 4
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.last_delivered_seq) == (5, 5, 6)
    assert outbox.mark_delivered_seqs([1, 2]) == 0  # again: nothing changes
    assert outbox.stats().delivered == 5
    assert outbox.check(full=True) == []  # counters audit agrees with the rows


def test_next_payloads_reads_pending_rows_in_seq_order_with_replayed(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 6))
    outbox.mark_delivered_seqs([2])
    outbox.mark_sent_ahead(3, 0)  # offered in seq order: 1 and 3 went out (2 is delivered)
    payloads = outbox.next_payloads(3, site="s")
    assert [seq for seq, _id, _json in payloads] == [1, 3, 4]
    bodies = [json.loads(text or b"") for _seq, _id, text in payloads]
    assert [b["seq"] for b in bodies] == [1, 3, 4]
    assert [b["replayed"] for b in bodies] == [True, True, False]
    assert [seq for seq, _i, _j in outbox.next_payloads(10, after_seq=4)] == [5, 6]


def test_delivery_marks_leave_inserts_fully_durable(outbox: Outbox) -> None:
    """Delivery marks commit without an fsync; every other commit must stay synchronous=FULL."""
    outbox.add_punches(punches(0, 3))
    outbox.mark_sent_ahead(2, 0)
    outbox.mark_sent([])
    outbox.mark_delivered_seqs([2])
    outbox.mark_delivered([outbox.next_batch(1)[0].id])
    conn = outbox._db()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert [(p.seq, p.replayed) for p in outbox.next_batch(3)] == [(3, False)]


def test_a_page_with_an_id_the_fast_path_cannot_split_is_read_row_by_row(outbox: Outbox) -> None:
    """Ids are UUID-shaped, but a salvaged row could hold anything: the page stays exact."""
    outbox.add_punches(punches(0, 3))
    conn = outbox._db()
    conn.execute("UPDATE punches SET id = 'odd,id-from-an-old-file-000000000000' WHERE seq = 2")
    rows = outbox.next_payloads(10, site="s")
    assert [(seq, punch_id) for seq, punch_id, _json in rows] == [
        (1, rows[0][1]),
        (2, "odd,id-from-an-old-file-000000000000"),
        (3, rows[2][1]),
    ]
    assert json.loads(rows[1][2] or b"")["id"] == "odd,id-from-an-old-file-000000000000"


def test_the_sent_mark_runs_ahead_but_never_past_the_newest_row(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    assert outbox.mark_sent_ahead(3, 4) == 7
    assert outbox.mark_sent_ahead(2, 1) == 7  # never lowered
    assert outbox.mark_sent_ahead(8, 100) == 10  # capped: a new punch is never born replayed
    outbox.add_punches(punches(10, 2))
    assert [p.replayed for p in outbox.next_batch(20)] == [True] * 10 + [False] * 2
    assert outbox.sent_mark() == 10
