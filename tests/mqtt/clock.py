"""A monotonic clock the test moves by hand, for the delivery worker's ack and re-send timers."""

from __future__ import annotations

import threading

# Clock readings after a move that prove the worker finished a round at the new time. A round
# reads the clock at most four times when no ack arrives (waiting for events, the round's
# ``now``, after reading a page, the periodic status): any five readings in a row hold a
# round's ``now`` followed by the next round's first reading, so that round's ack-timeout
# check and publishing are done.
ROUND_READS = 5


class DrivenClock:
    """Stands for ``time.monotonic``; only ``advance`` moves it, so no timer races the test."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._reads = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self._reads += 1
            self._changed.notify_all()
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward; the worker sees it at its next round (within poll_interval)."""
        with self._changed:
            self._now += seconds
            self._reads = 0

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the worker has finished a whole round at the current time."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._reads >= ROUND_READS, timeout):
                raise AssertionError(
                    f"the delivery worker did not read the clock {ROUND_READS} times within "
                    f"{timeout}s of it being moved: is its thread stuck?"
                )
