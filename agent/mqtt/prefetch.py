"""The next pages of pending punches, read on threads of their own while the worker publishes.

Writing the contract JSON is SQLite's work, done with the GIL released, and it is the larger
part of the drain's cost: reading the next pages on connections of their own (WAL readers run
beside the writer) while the worker thread publishes and records acks spreads that work over
the cores. Where a page ends is cheap to find (an index walk), so pages further ahead can be
read before the ones in front of them are taken. ``depth`` pages are kept read or being read
ahead (memory stays bounded): with only the next two, the readers finished them while the
worker was busy publishing, and then sat idle while the worker waited for the page after.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from buffer.payload import Page, PayloadReader

PageEnd = Callable[[int, int], int | None]  # (limit, after_seq) -> seq where that page ends


class Prefetcher:
    """Pages of pending rows, read ahead; used by the delivery worker's thread only."""

    def __init__(
        self, readers: list[PayloadReader], page_end: PageEnd, timeout: float, depth: int = 4
    ) -> None:
        self._page_end = page_end
        self._depth = depth
        self._timeout = timeout
        self._readers = readers
        self._free: queue.SimpleQueue[PayloadReader] = queue.SimpleQueue()
        for reader in readers:
            self._free.put(reader)
        # One thread per reader: a read owns its connection until it ends, and a read still
        # running when its page is forgotten simply finishes.
        self._pool = ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="mqtt-read")
        self._ahead: dict[tuple[int, int], Future[Page]] = {}
        # Where each page read ahead ends (the next one's start), found once per page. If rows
        # are delivered meanwhile, the page the drain asks for may start elsewhere: that page
        # is then simply read when asked for (``take``), and the stale ones are dropped.
        self._ends: dict[tuple[int, int], int | None] = {}

    def _read(self, limit: int, after_seq: int, sent: int) -> Page:
        reader = self._free.get()
        try:
            return reader.read(limit, after_seq, sent)
        finally:
            self._free.put(reader)

    def _submit(self, after_seq: int, limit: int, sent: int) -> Future[Page]:
        return self._pool.submit(self._read, limit, after_seq, sent)

    def take(self, after_seq: int, limit: int, sent: int) -> Page:
        """The page after ``after_seq``: the one read ahead if it was for this place, else now.

        Rows up to ``sent`` are ``replayed``. A page read ahead lies beyond everything offered
        so far (a rewind forgets it), so the mark it was read with still holds for it.
        """
        ahead = self._ahead.pop((after_seq, limit), None)
        future = ahead or self._submit(after_seq, limit, sent)
        return future.result(timeout=self._timeout)

    def read_ahead(self, after_seq: int, limit: int, sent: int) -> None:
        """Start reading the page after ``after_seq`` and the pages after it, ``depth`` in all.

        Reads already under way for those places are kept; the others are dropped.
        """
        wanted = [(after_seq, limit)]
        ends: dict[tuple[int, int], int | None] = {}
        while len(wanted) < self._depth:  # bounded by depth
            key = wanted[-1]
            end = self._ends[key] if key in self._ends else self._page_end(limit, key[0])
            ends[key] = end
            if end is None:  # fewer rows than a page after this one: nothing further yet
                break
            wanted.append((end, limit))
        self._ends = ends
        self._ahead = {key: self._ahead.get(key) or self._submit(*key, sent) for key in wanted}

    def forget(self) -> None:
        """Drop the pages read ahead (after a rewind they may be stale)."""
        self._ahead = {}
        self._ends = {}

    def close(self) -> None:
        """Wait for reads in progress, then close the readers' connections."""
        self._ahead = {}
        self._pool.shutdown(wait=True, cancel_futures=True)
        for reader in self._readers:
            reader.close()
