"""The one reconnect backoff policy: exponential with full jitter, reset on success.

Shared by the drivers (terminal and serial reconnects) and the agent (MQTT reconnects, device
workers); it lives in ``drivers/`` because that is the lowest layer both import.

Full jitter (a uniform draw between zero and the exponential cap) spreads thousands of gateways
reconnecting after a broker restart over the whole interval instead of in lock-step waves.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``uniform(0, min(maximum, minimum * 2**attempt))``; ``reset()`` after a success."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError("backoff needs 0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def cap(self) -> float:
        """The upper bound of the next delay."""
        return min(self.maximum, self.minimum * (2 ** min(self.attempt, 62)))

    def next_delay(self) -> float:
        """The next delay in seconds; each call doubles the cap up to ``maximum``."""
        delay = self._rng.uniform(0.0, self.cap())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
