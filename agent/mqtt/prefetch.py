"""The next pages of pending punches, read on threads of their own while the worker publishes.

Writing the contract JSON is SQLite's work, done with the GIL released, and it is the larger
part of the drain's cost: reading the next pages on connections of their own (WAL readers run
beside the writer) while the worker thread publishes and records acks spreads that work over
the cores. Where a page ends is cheap to find (an index walk), so the page after the next one
can be read at the same time. At most ``depth`` pages are read ahead: memory stays bounded.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from buffer.payload import Page, PayloadReader

PageEnd = Callable[[int, int], int | None]  # (limit, after_seq) -> seq where that page ends


class Prefetcher:
    """Pages of pending rows, read ahead; used by the delivery worker's thread only."""

    def __init__(self, readers: list[PayloadReader], page_end: PageEnd, timeout: float) -> None:
        self._page_end = page_end
        self._timeout = timeout
        self._readers = readers
        self._free: queue.SimpleQueue[PayloadReader] = queue.SimpleQueue()
        for reader in readers:
            self._free.put(reader)
        # One thread per reader: a read owns its connection until it ends, and a read still
        # running when its page is forgotten simply finishes.
        self._pool = ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="mqtt-read")
        self._ahead: dict[tuple[int, int], Future[Page]] = {}

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
        """Start reading the page after ``after_seq``, and the one after it with a second reader."""
        wanted = [(after_seq, limit)]
        if len(self._readers) > 1:
            end = self._page_end(limit, after_seq)
            if end is not None:
                wanted.append((end, limit))
        self._ahead = {key: self._ahead.get(key) or self._submit(*key, sent) for key in wanted}

    def forget(self) -> None:
        """Drop the pages read ahead (after a rewind they may be stale)."""
        self._ahead = {}

    def close(self) -> None:
        """Wait for reads in progress, then close the readers' connections."""
        self._ahead = {}
        self._pool.shutdown(wait=True, cancel_futures=True)
        for reader in self._readers:
            reader.close()
