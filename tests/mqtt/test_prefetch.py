"""Pages read ahead on reader threads are exactly the pages a plain read gives."""

from __future__ import annotations

from agent.mqtt.prefetch import Prefetcher
from buffer import Outbox
from tests.buffer.factory import punches


def _prefetcher(outbox: Outbox, readers: int = 2) -> Prefetcher:
    return Prefetcher(
        [outbox.payload_reader("site") for _ in range(readers)], outbox.page_end, timeout=10
    )


def test_pages_read_two_at_a_time_are_the_pages_read_one_by_one(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 1000))
    outbox.mark_delivered_seqs(list(range(150, 260)))  # a delivered range inside the backlog
    expected = []
    after = 0
    while seqs := outbox.next_payloads(100, after_seq=after, site="site"):
        expected.append([s for s, _i, _j in seqs])
        after = seqs[-1][0]
    prefetcher = _prefetcher(outbox)
    try:
        got, after = [], 0
        for _ in range(20):
            page = prefetcher.take(after, 100, 0)
            if not page[0]:
                break
            got.append(page[0])
            after = page[0][-1]
            prefetcher.read_ahead(after, 100, 0)
        assert got == expected
        assert [len(p) for p in got] == [100] * 8 + [90]
    finally:
        prefetcher.close()


def test_a_forgotten_page_is_read_again_after_changes(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 10))
    prefetcher = _prefetcher(outbox)
    try:
        prefetcher.read_ahead(0, 5, 0)
        assert prefetcher.take(0, 5, 0)[0] == [1, 2, 3, 4, 5]  # the page read ahead
        prefetcher.read_ahead(0, 5, 0)
        outbox.mark_delivered_seqs([1, 2])
        prefetcher.forget()  # e.g. a rewind: the page read ahead may be stale
        assert prefetcher.take(0, 5, 0)[0] == [3, 4, 5, 6, 7]
        # A page asked for at another place than the one read ahead is read then.
        prefetcher.read_ahead(0, 5, 0)
        assert prefetcher.take(5, 5, 0)[0] == [6, 7, 8, 9, 10]
    finally:
        prefetcher.close()
