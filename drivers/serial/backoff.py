"""A tiny reconnect backoff: doubling delays with jitter, capped, reset on success."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays ``first, 2*first, 4*first, ...`` up to ``ceiling``, each with ±20% jitter."""

    def __init__(
        self, first: float, ceiling: float, rng: Callable[[], float] = random.random
    ) -> None:
        if first <= 0 or ceiling < first:
            raise ValueError("backoff needs 0 < first <= ceiling")
        self.first = first
        self.ceiling = ceiling
        self._rng = rng
        self._next = first

    def next(self) -> float:
        """The next delay in seconds (never above ``ceiling``)."""
        delay = self._next
        self._next = min(self.ceiling, self._next * 2)
        # Jitter spreads the retries of many gateways behind one serial server.
        return min(self.ceiling, delay * (0.8 + 0.4 * self._rng()))

    def reset(self) -> None:
        """Start again from ``first`` (after a success)."""
        self._next = self.first
