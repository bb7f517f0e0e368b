"""Re-sending what was not acknowledged: the dropped window and the pauses while acks are silent.

Whatever was in flight when the connection dropped, or was not acknowledged within
``ack_timeout``, is written off here and read again from the outbox (same ids, ``replayed:
true``), the failed attempt counted on the rows with its reason. While the broker or backend
stays silent, each further re-send waits longer, up to ``SILENCE_MAX``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import structlog

from agent.mqtt.options import MqttOptions
from agent.mqtt.packing import Batch
from agent.mqtt.prefetch import Prefetcher
from agent.mqtt.window import InFlight, Window
from buffer.outbox import Outbox
from config.errors import PunchgateError

SILENCE_MAX = 900.0  # s: the longest wait before re-sending to a broker or backend that is silent


class ResendMethods:
    """Mixed into ``Drain``, which provides the attributes declared here."""

    options: MqttOptions
    outbox: Outbox
    window: Window
    staged: deque[Batch]
    cursor: int
    more: bool
    rewind: bool
    hold_until: float
    in_flight: int
    silence: str | None
    _backend: bool
    _clock: Callable[[], float]
    _log: structlog.typing.FilteringBoundLogger
    _reader: Prefetcher
    _dropped: list[InFlight]
    _silent: int
    _silence_hold: float

    def drop_window(self, why: str) -> None:
        """Write off the in-flight window and the staged batches: read them again later."""
        dropped = self.window.clear()
        if self._backend:
            self._dropped = dropped
        self.staged.clear()  # read again from the outbox, in order, after the dropped rows
        self._reader.forget()
        self.in_flight = 0
        self.cursor = 0
        self.rewind = False
        self.more = True
        if dropped:
            self._log.info(
                "re-sending in-flight batches later",
                why=why,
                batches=len(dropped),
                first_seq=min(b.first_seq for b in dropped),
            )
            # Counted and explained on the rows (``outbox show``); one transaction, by ranges.
            # Only diagnostics: if it cannot be written, the rows are re-sent all the same.
            try:
                seqs = [s for b in dropped for s in b.unacked_seqs(self._backend)]
                self.outbox.mark_failed_seqs(seqs, why)
            except PunchgateError as exc:
                self._log.warning("could not record the failed attempts", error=str(exc))

    def check_ack_timeout(self, now: float) -> None:
        """Re-send what was not acknowledged within ``ack_timeout``.

        The first time at once; after each further timeout in a row the re-send waits longer
        (the cap doubles from 2 x ``ack_timeout`` up to ``SILENCE_MAX``, waiting between half
        the cap and the cap): a backend that is down for hours is not sent the same window
        every ``ack_timeout``, and gateways spread out instead of re-sending in step. Any
        acknowledgement starts the count again.
        """
        oldest = self.window.oldest_sent_at()
        if oldest is None or now - oldest < self.options.ack_timeout:
            return
        self._silent += 1
        hold = 0.0
        if self._silent > 1:
            timeout = self.options.ack_timeout
            cap = min(max(timeout, SILENCE_MAX), timeout * 2 ** min(self._silent - 1, 32))
            hold = random.uniform(cap / 2, cap)  # jitter: gateways spread out
        # Warned when the silence starts; each re-send after it only at debug (the status
        # shows the count), and "acknowledgements resumed" when it ends.
        (self._log.warning if self._silent == 1 else self._log.debug)(
            "no acknowledgement within ack_timeout; re-sending",
            ack=self.options.ack,
            ack_timeout_s=self.options.ack_timeout,
            timeouts_in_a_row=self._silent,
            resend_in_s=round(hold, 1),
            action="re-sending with growing pauses until acknowledged; check that the "
            + ("backend is running and subscribed to the punches topic" if self._backend
               else "broker is not overloaded and its listener allows QoS 1"),
        )  # fmt: skip
        who = "backend" if self._backend else "broker"
        self.silence = (
            f"no acknowledgement from the {who} within ack_timeout "
            f"({self.options.ack_timeout:g}s), {self._silent} time(s) in a row; "
            f"re-sending {'now' if not hold else f'in {hold:.0f}s'}"
        )
        self.drop_window("ack timeout")
        self._silence_hold = now + hold
        self.hold_until = max(self.hold_until, self._silence_hold)

    def _heard_from(self) -> None:
        if self._silent:  # heard from again: re-send at once next time, and stop waiting
            self._log.info(
                "acknowledgements resumed", ack=self.options.ack, timeouts_in_a_row=self._silent
            )
            self._silent = 0
            self.silence = None
            if self.hold_until == self._silence_hold:
                self.hold_until = 0.0
