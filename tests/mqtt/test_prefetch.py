"""Pages read ahead on reader threads are exactly the pages a plain read gives."""

from __future__ import annotations

import pytest

from agent.mqtt.prefetch import Prefetcher
from buffer import Outbox
from tests.buffer.factory import punches


def _prefetcher(outbox: Outbox, readers: int = 2, depth: int = 4) -> Prefetcher:
    return Prefetcher(
        [outbox.payload_reader("site") for _ in range(readers)],
        outbox.page_end,
        timeout=10,
        depth=depth,
    )


def _pages(outbox: Outbox, size: int) -> list[list[int]]:
    """The seqs of each page of pending rows, read one by one on the outbox's connection."""
    pages = []
    after = 0
    while seqs := outbox.next_payloads(size, after_seq=after, site="site"):
        pages.append([s for s, _i, _j in seqs])
        after = seqs[-1][0]
    return pages


@pytest.mark.parametrize("depth", [1, 2, 4, 9])
def test_pages_read_ahead_are_the_pages_read_one_by_one(outbox: Outbox, depth: int) -> None:
    outbox.add_punches(punches(0, 1000))
    outbox.mark_delivered_seqs(list(range(150, 260)))  # a delivered range inside the backlog
    expected = _pages(outbox, 100)
    prefetcher = _prefetcher(outbox, depth=depth)
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


def test_rows_delivered_under_pages_read_ahead_still_give_the_right_pages(outbox: Outbox) -> None:
    """Backend acks can deliver rows ahead of the drain: where pages end moves under it."""
    outbox.add_punches(punches(0, 600))
    prefetcher = _prefetcher(outbox, depth=4)
    try:
        first = prefetcher.take(0, 100, 0)[0]
        prefetcher.read_ahead(first[-1], 100, 0)  # pages from 101, 201, 301 being read
        outbox.mark_delivered_seqs(list(range(120, 180)) + list(range(250, 270)))
        got, after = [first], first[-1]
        for _ in range(10):
            page = prefetcher.take(after, 100, 0)[0]
            if not page:
                break
            got.append(page)
            after = page[-1]
            prefetcher.read_ahead(after, 100, 0)
        # Each page is a snapshot at its read; together they hold every row still pending
        # when it was read, each once, in order. A page read before the acks may repeat an
        # acked row (sent again with its id); none is skipped.
        seqs = [s for page in got for s in page]
        assert seqs == sorted(set(seqs))
        assert set(seqs) >= set(range(1, 601)) - set(range(120, 180)) - set(range(250, 270))
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
