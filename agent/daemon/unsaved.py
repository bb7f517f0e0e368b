"""Punches read from a line that has no memory (serial), held until the outbox takes them."""

from __future__ import annotations

from collections import deque

from drivers.base import Punch

MAX_UNSAVED = 10_000  # about a day of a busy clock; beyond it the oldest are dropped (logged)


class UnsavedPunches:
    """A bounded FIFO of punches the outbox has not stored yet; used by one worker thread."""

    def __init__(self, limit: int = MAX_UNSAVED) -> None:
        self._items: deque[Punch] = deque()
        self._limit = max(1, limit)
        self.dropped = 0  # dropped since the last ``take_dropped``

    def __len__(self) -> int:
        return len(self._items)

    def add(self, punch: Punch) -> None:
        """Keep ``punch``; the oldest one goes when the limit is reached."""
        if len(self._items) >= self._limit:
            self._items.popleft()
            self.dropped += 1
        self._items.append(punch)

    def pending(self) -> list[Punch]:
        """The punches still to store, oldest first."""
        return list(self._items)

    def stored(self, count: int) -> None:
        """The first ``count`` punches of ``pending()`` are in the outbox now."""
        for _ in range(min(count, len(self._items))):
            self._items.popleft()

    def take_dropped(self) -> int:
        """How many were dropped since the last call (and start counting again)."""
        dropped, self.dropped = self.dropped, 0
        return dropped
