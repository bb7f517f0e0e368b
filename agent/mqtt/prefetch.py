"""The next page of pending punches, read on a thread of its own while the worker publishes.

Writing the contract JSON is SQLite's work, done with the GIL released, and it is the larger
half of the drain's cost: reading page N+1 on a second connection (WAL readers run beside the
writer) while the worker thread publishes page N and records its acks lets the two halves use
both cores. One page is read ahead, no more: memory stays bounded by the staging depth.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from buffer.payload import Page, PayloadReader


class Prefetcher:
    """Pages of ``PayloadReader`` with one read ahead; used by the delivery worker's thread only."""

    def __init__(self, reader: PayloadReader, timeout: float) -> None:
        self._reader = reader
        self._timeout = timeout
        # One thread: reads never overlap on the reader's connection, and a read still running
        # when its page is forgotten simply finishes before the next one starts.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-read")
        self._ahead: tuple[int, int, Future[Page]] | None = None

    def take(self, after_seq: int, limit: int) -> Page:
        """The page after ``after_seq``: the one read ahead if it was for this place, else now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[:2] == (after_seq, limit):
            future = ahead[2]
        else:
            future = self._pool.submit(self._reader.read, limit, after_seq)
        return future.result(timeout=self._timeout)

    def read_ahead(self, after_seq: int, limit: int) -> None:
        """Start reading the page after ``after_seq`` now; ``take`` collects it."""
        self._ahead = (after_seq, limit, self._pool.submit(self._reader.read, limit, after_seq))

    def forget(self) -> None:
        """Drop the page read ahead (after a rewind it may be stale)."""
        self._ahead = None

    def close(self) -> None:
        """Wait for a read in progress, then close the reader's connection."""
        self._ahead = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._reader.close()
