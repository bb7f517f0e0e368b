"""A re-entrant lock that serves waiting threads in the order they came.

The outbox's threads share one connection under one lock. Long jobs take it round by round
(a prune, a terminal's full log stored in chunks) so that the others get in between. With
``threading.RLock`` they did not: a release wakes a waiter, but the releasing thread, still
running, takes the lock again before the waiter gets to it, so a device worker waited for a
whole prune (found by tests/buffer/test_concurrent_prune.py on an idle machine). Here each
acquirer takes a ticket, and the lock goes to tickets in order.
"""

from __future__ import annotations

import threading
from types import TracebackType


class FairRLock:
    """``threading.RLock`` semantics, first come first served between threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()  # tickets whose thread gave up waiting

    @property
    def waiting(self) -> int:
        """Threads waiting for their turn (for tests and diagnostics)."""
        with self._cond:
            held = 0 if self._owner is None else 1  # the holder's ticket is still "serving"
            return self._next_ticket - self._serving - len(self._abandoned) - held

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock (again, if this thread holds it); False if ``timeout`` passed first."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                ready = self._cond.wait_for(
                    lambda: self._owner is None and self._serving == ticket, timeout
                )
            except BaseException:  # interrupted: never leave the queue stuck on this ticket
                self._give_up(ticket)
                raise
            if not ready:
                self._give_up(ticket)
                return False
            self._owner = me
            self._depth = 1
            return True

    def release(self) -> None:
        """Release once; the last release hands the lock to the next ticket."""
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a lock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._advance()

    def _give_up(self, ticket: int) -> None:
        """Leave the queue; the caller holds ``_cond``."""
        if self._serving == ticket and self._owner is None:
            self._advance()  # it was this ticket's turn: pass it on
        else:
            self._abandoned.add(ticket)

    def _advance(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def __enter__(self) -> FairRLock:
        self.acquire()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.release()
