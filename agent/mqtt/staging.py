"""Staging and publishing for the drain: pages read ahead, encoded into batches, published.

A few batches are read and encoded ahead (*staged*), so that reading, encoding and the
``mark_sent`` transaction happen while earlier batches await their acks; staged batches go into
the in-flight window in sequence order. Before a row is first published, the outbox's sent mark
is raised past it, so that a re-send of it says ``replayed: true``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from agent.mqtt.broker_limits import BrokerLimits
from agent.mqtt.connection import Published
from agent.mqtt.encoding import PunchEncoder
from agent.mqtt.options import MqttOptions
from agent.mqtt.packing import Batch, Packer
from agent.mqtt.prefetch import Prefetcher
from agent.mqtt.window import InFlight, Window
from buffer.outbox import Outbox
from buffer.payload import Page

Publish = Callable[[bytes], Published | None]
Limit = Callable[[], int | None]
READERS = 2  # pages read at once (see agent/mqtt/prefetch.py)
READ_AHEAD = 4  # pages kept read or being read ahead
SENT_AHEAD = 4  # pages: how far the stored sent mark runs ahead of what was offered


class StagingMethods:
    """Mixed into ``Drain``, which provides the attributes declared here."""

    options: MqttOptions
    outbox: Outbox
    window: Window
    limits: BrokerLimits
    staged: deque[Batch]
    generation: int
    cursor: int
    more: bool
    rewind: bool
    hold_until: float
    next_poll: float
    failing: str | None
    in_flight: int
    _backend: bool
    _publish: Publish
    _payload_limit: Limit
    _encoder: PunchEncoder
    _packer: Packer
    _reader: Prefetcher
    _stage_max: int
    _page: int
    _sent: int
    _sent_stored: int
    _rewinds: int
    _log: structlog.typing.FilteringBoundLogger
    _clock: Callable[[], float]

    if TYPE_CHECKING:

        def request_rewind(self) -> None: ...  # Drain

    def _can_publish(self, now: float) -> bool:
        return bool(
            self.generation
            and now >= self.hold_until
            and not self.rewind
            and self.staged
            and len(self.window) < self.options.inflight
        )

    def _can_stage(self, now: float) -> bool:
        return bool(
            self.generation
            and now >= self.hold_until
            and not self.rewind
            and len(self.staged) <= self._stage_max // 2
        )

    def fill(self, now: float) -> None:
        """Publish staged batches into the window; read and stage more when half are gone."""
        if not self.generation or now < self.hold_until:
            return
        if self.rewind:
            if self.window:
                return  # wait for the window to drain, then start again from the lowest row
            self.staged.clear()
            self._reader.forget()
            self.cursor = 0
            self.rewind = False
            self.more = True
        self._publish_staged(now)
        if self._can_stage(now) and (self.more or now >= self.next_poll):
            if not self.more and self._rewound_elsewhere():
                return  # start again from the lowest pending row once the window is empty
            self._stage(now)
            # Stamped with the time they go out, not the round's start: the page read may have
            # waited seconds (a stalling SD card, SQLite's busy timeout), and batches stamped
            # before it timed out before their acks were even looked at: nothing was delivered.
            self._publish_staged(self._clock())

    def _rewound_elsewhere(self) -> bool:
        """Whether another process made rows pending again below the cursor (a poll's check).

        ``punchgate outbox redeliver`` does that from the technician's shell; only a rewind
        finds those rows, as the cursor only moves forward.
        """
        count = self.outbox.rewinds()
        if count == self._rewinds:
            return False
        self._rewinds = count
        self.request_rewind()
        return True

    def _stage(self, now: float) -> None:
        free = self._stage_max - len(self.staged)
        page = self._reader.take(self.cursor, self._page, self._sent)
        seqs = page[0]
        self.more = len(seqs) == self._page
        if not self.more:
            self.next_poll = now + self.options.poll_interval
        if not seqs:
            return
        if self.more:  # read the next page while this one is published
            self._reader.read_ahead(seqs[-1], self._page, self._sent)
        batches = self.split(page)
        if len(batches) > free:  # small batches (bytes limit): the rest is read again
            batches = batches[:free]
            self.more = True
        if not batches:  # every row of the page was skipped (recorded as failed): move on
            self.cursor = seqs[-1]
            return
        # Before publishing: a row offered once is "replayed" ever after, even if the process
        # dies before the PUBACK (or the connection drops before it goes out). The stored mark
        # runs a few pages ahead, so it is written once per few pages, not per page.
        top = batches[-1][0][-1]
        if top > self._sent_stored:
            self._sent_stored = self.outbox.mark_sent_ahead(top, SENT_AHEAD * self._page)
        self._sent = max(self._sent, top)
        for batch in batches:
            self.staged.append(batch)
            self.cursor = batch[0][-1]

    def _publish_staged(self, now: float) -> None:
        while self._can_publish(now):
            seqs, ids, body = self.staged[0]
            published = self._publish(body)
            if published is None:
                return  # disconnected meanwhile: the disconnect event drops and rewinds
            self.staged.popleft()
            self.limits.sent(len(body))
            self.window.add(
                InFlight(
                    mid=(published.generation, published.mid), seqs=seqs, ids=ids, sent_at=now
                ),
                track_ids=self._backend,
            )
            self.in_flight += len(ids)

    def split(self, page: Page) -> list[Batch]:
        """Encode a page into batches of at most ``batch_size`` punches and about ``batch_bytes``.

        A broker that announced a smaller Maximum Packet Size caps the bytes: a larger batch
        would get us disconnected and re-sent forever (so does a cap learned from a broker that
        drops large messages unannounced). A row that cannot be encoded, or that alone is
        larger than the broker's announced maximum, is recorded as failed and skipped (it
        stays pending, and shows as a gap) rather than blocking every row behind it.
        """
        limit = self._payload_limit()
        return self._packer.split(page, self.limits.max_bytes(limit), limit)

    def _encode_row(self, punch_id: str) -> bytes:
        row = self.outbox.get(punch_id)
        if row is None:
            raise LookupError(f"punch {punch_id} is no longer in the outbox")
        return self._encoder.encode(row, replayed=row.attempts > 0 or row.seq <= self._sent)

    def _skip(self, seq: int, punch_id: str, error: str) -> None:
        self._log.error("skipping a punch that cannot be sent", seq=seq, error=error)
        self.outbox.mark_failed([punch_id], error)
        self.failing = error
