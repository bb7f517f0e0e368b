"""Card double-read suppression: a reader repeats a card while it stays in the field."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class Deduplicator:
    """Drops a key seen again within ``window`` seconds of its previous sighting.

    The window slides with every sighting, so a card held against the reader for a minute is
    one punch, not one per window. Memory is bounded: keys older than the window are forgotten,
    and at most ``max_keys`` are remembered.
    """

    def __init__(self, window: float, max_keys: int = 10_000) -> None:
        if window < 0:
            raise ValueError("the de-duplication window cannot be negative")
        self.window = window
        self._max_keys = max_keys
        self._last: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def is_duplicate(self, key: Hashable, now: float) -> bool:
        """Record a sighting of ``key`` at ``now`` (monotonic seconds); True if it is a repeat."""
        if self.window <= 0:
            return False
        self._forget_before(now - self.window)
        previous = self._last.pop(key, None)
        self._last[key] = now  # re-inserted last: the dict stays ordered by last sighting
        if len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        # abs(): on printed times (drivers/serial/driver.py) a clock set back may go backwards.
        return previous is not None and abs(now - previous) <= self.window

    def _forget_before(self, cutoff: float) -> None:
        while self._last:
            key, seen = next(iter(self._last.items()))
            if seen >= cutoff:
                break
            del self._last[key]
