"""The drain: which outbox rows to publish next, and which are delivered.

A state machine driven by the delivery worker's thread alone (no locks): a cursor into the
outbox, a few batches read and encoded ahead (*staged*), the in-flight window, and the marks to
commit. This module holds its state, the connection events and when it next has work; the rest
is mixed in, one concept each:

* ``agent/mqtt/staging.py``: pages read ahead, encoded into batches, published in seq order;
* ``agent/mqtt/acks.py``: PUBACKs and backend acks become delivery marks, gathered;
* ``agent/mqtt/resend.py``: what was not acknowledged is dropped and read again, with pauses
  while the broker or backend stays silent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import structlog

from agent.mqtt.acks import AckMethods
from agent.mqtt.broker_limits import BrokerLimits
from agent.mqtt.encoding import PunchEncoder
from agent.mqtt.options import MqttOptions
from agent.mqtt.packing import Batch, Packer
from agent.mqtt.prefetch import Prefetcher
from agent.mqtt.resend import ResendMethods
from agent.mqtt.staging import READ_AHEAD, READERS, Limit, Publish, StagingMethods
from agent.mqtt.window import InFlight, Window
from buffer.outbox import Outbox
from drivers.backoff import Backoff

# How long the worker waits for a page of the outbox: SQLite's busy timeout (10 s by default)
# and a stalling SD card, not the backend's ack_timeout. Bounded by ack_timeout, a read slower
# than a short ack_timeout failed every step and nothing was delivered at all.
PAGE_READ_TIMEOUT = 30.0


class Drain(StagingMethods, AckMethods, ResendMethods):
    """Cursor, window and marks of the delivery worker; see the module docstring."""

    def __init__(
        self,
        options: MqttOptions,
        outbox: Outbox,
        gateway_id: str,
        site: str,
        publish: Publish,
        clock: Callable[[], float],
        log: structlog.typing.FilteringBoundLogger,
        payload_limit: Limit = lambda: None,
    ) -> None:
        self.options = options
        self.outbox = outbox
        self.gateway_id = gateway_id
        self._publish = publish
        self._payload_limit = payload_limit
        self._clock = clock
        self._log = log
        self._backend = options.ack == "backend"
        self._site = site
        self._encoder = PunchEncoder(site)
        self.outbox_id = outbox.outbox_id()
        self._packer = Packer(
            options.batch_size, gateway_id, self.outbox_id, self._encode_row, self._skip
        )
        self._foreign_numbering: str | None = None  # an ack's other outbox_id, logged once
        # Staged batches: read and encoded, below the sent mark, not yet published. Refilled
        # when half empty, so one read covers several batches. At most 8
        # whatever the window: a wide window (backend acks) needs no deeper read-ahead, and
        # staged bytes are memory on top of the window's.
        self.staged: deque[Batch] = deque()
        self._stage_max = max(2, min(options.inflight, 8))
        # Staging starts when at most half is left, so a read of the other half always fits;
        # a fixed page size lets the page read ahead be the one asked for next.
        self._page = (self._stage_max - self._stage_max // 2) * options.batch_size
        self._reader = Prefetcher(
            [outbox.payload_reader(site) for _ in range(READERS)],
            outbox.page_end,
            timeout=max(options.ack_timeout, PAGE_READ_TIMEOUT),
            depth=READ_AHEAD,
        )
        # "Replayed" is every row up to what this process has offered, or up to the mark it
        # found stored (which an earlier process may have raised ahead of what it sent).
        self._sent = outbox.sent_mark()
        self._sent_stored = self._sent
        self._rewinds = outbox.rewinds()  # see _rewound_elsewhere
        self._retry = Backoff(options.reconnect_min, options.reconnect_max)
        self._silent = 0  # ack timeouts in a row, without any acknowledgement in between
        self._silence_hold = 0.0  # until when re-sending waits because of that silence
        self.silence: str | None = None  # for the status while nothing is acknowledged
        # Backend mode: the batches last dropped from the window (ack timeout, lost connection),
        # so that a late ack by ``contiguous_seq`` still finds what it covers (acks by id
        # always do). At most one window's worth.
        self._dropped: list[InFlight] = []
        self.window = Window()
        self.limits = BrokerLimits(options, gateway_id, log)  # learned from refusals and drops
        self.generation = 0  # the connection rows are published on; 0 while disconnected
        self.cursor = 0  # highest seq read (staged or published) on this connection
        self.more = True  # the last read filled its page: there may be more rows
        self.rewind = False  # start again from the lowest pending row once the window is empty
        self.hold_until = 0.0  # no publishing before this (after a refusal or an error)
        self.next_poll = 0.0
        self.to_deliver: list[str] = []  # backend acks, by id
        self.to_deliver_seqs: list[int] = []  # PUBACKs and backend acks of batches in flight
        self.failing: str | None = None
        self._refusal_logged: str | None = None  # the refusal last logged, until a PUBACK
        self.commit_due = float("inf")  # when the gathered acks must be recorded
        # Read by other threads for status: plain counters, each one assignment.
        self.delivered = 0
        self.in_flight = 0

    # -- connection events --------------------------------------------------------------------

    def connected(self, generation: int) -> None:
        """A new connection: publish from the lowest pending row on it."""
        self.generation = generation
        self.cursor = 0
        self.more = True
        self.rewind = False
        self.hold_until = 0.0

    def disconnected(self, generation: int, reason: str) -> None:
        """The connection dropped: what was in flight is re-sent on the next one."""
        if generation == self.generation:
            self.generation = 0
        hint = self.limits.dropped(reason, batches_in_flight=bool(self.window))
        self.drop_window(f"connection lost: {reason}{hint}")

    def request_rewind(self) -> None:
        """Start again from the lowest pending row once the window is empty."""
        self.rewind = True
        self.more = True

    def wake(self) -> None:
        """New rows may be in the outbox: read now rather than at the next poll."""
        self.more = True

    def close(self) -> None:
        """Stop the read-ahead threads and close their connections (idempotent)."""
        self._reader.close()

    # -- scheduling ----------------------------------------------------------------------------

    def wait_timeout(self, now: float) -> float:
        """How long the worker may wait for events before the drain has work to do."""
        if self._can_publish(now) or (self._can_stage(now) and self.more):
            return 0.0
        if self.rewind and self.generation and not self.window and now >= self.hold_until:
            return 0.0
        timeout = self.options.poll_interval
        if self._can_stage(now):
            timeout = min(timeout, self.next_poll - now)
        if self.hold_until > now:
            timeout = min(timeout, self.hold_until - now)
        oldest = self.window.oldest_sent_at()
        if oldest is not None:
            timeout = min(timeout, oldest + self.options.ack_timeout - now)
        return min(timeout, self.commit_due - now)
