"""The drain: which outbox rows to publish next, and which are delivered.

A state machine driven by the delivery worker's thread alone (no locks): a cursor into the
outbox, a few batches read and encoded ahead (*staged*, so that reading, encoding and the
``mark_sent`` transaction happen while earlier batches await their acks), the in-flight window,
and the marks to commit. Batches go out in sequence order; a row is
marked delivered on a successful PUBACK (``ack = "broker"``) or on the backend's acknowledgement
(``ack = "backend"``). Whatever was in flight when the connection dropped, was refused by the
broker, or was not acknowledged within ``ack_timeout`` is read again from the outbox and
re-published (same id, ``replayed: true``: ``mark_sent`` raised the outbox's sent mark past it
before the first publish, and the failed attempt is counted on the row with its reason).
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from typing import Any

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
from config.errors import PunchgateError
from drivers.backoff import Backoff

Publish = Callable[[bytes], Published | None]
Limit = Callable[[], int | None]
COMMIT_DELAY = 0.05  # s: longest an ack waits to be recorded while batches are in flight
COMMIT_ROWS = 2000  # punches: or as soon as this many acks are waiting
READERS = 2  # pages read at once (see agent/mqtt/prefetch.py)
READ_AHEAD = 4  # pages kept read or being read ahead
SENT_AHEAD = 4  # pages: how far the stored sent mark runs ahead of what was offered
SILENCE_MAX = 900.0  # s: the longest wait before re-sending to a broker or backend that is silent


class Drain:
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
            timeout=options.ack_timeout,
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
        self.generation = generation
        self.cursor = 0
        self.more = True
        self.rewind = False
        self.hold_until = 0.0

    def disconnected(self, generation: int, reason: str) -> None:
        if generation == self.generation:
            self.generation = 0
        hint = self.limits.dropped(reason, batches_in_flight=bool(self.window))
        self.drop_window(f"connection lost: {reason}{hint}")

    def on_puback(self, generation: int, mid: int, ok: bool, reason: str) -> None:
        batch = self.window.get((generation, mid))
        if batch is None:
            return  # a status message or command reply, or a batch already written off
        if not ok:
            self.window.pop((generation, mid))
            self.in_flight -= len(batch.ids)
            error = f"broker refused the batch: {reason}{self.limits.refusal_hint(reason)}"
            if error != self._refusal_logged:  # once per refusal, not at every re-send
                self._refusal_logged = error
                self._log.warning(
                    "broker refused a batch; will re-send",
                    reason=reason,
                    first_seq=batch.first_seq,
                    punches=len(batch.ids),
                    error=error,
                )
            self.outbox.mark_failed(batch.ids, error)
            self.failing = error
            self.rewind = True
            self.hold_until = self._clock() + self._retry.next_delay()
            return
        self._retry.reset()
        self._refusal_logged = None
        if self._backend:
            batch.pubacked = True  # the broker has it; the backend has not said so yet
            return
        self.window.pop((generation, mid))
        self.in_flight -= len(batch.ids)
        self.to_deliver_seqs.extend(batch.seqs)
        self._acked()

    def on_backend_ack(self, payload: bytes) -> None:
        try:
            body: Any = json.loads(payload)
        except ValueError:
            self._log.warning("ignoring a backend ack that is not JSON", size=len(payload))
            return
        if not isinstance(body, dict) or body.get("gateway_id", self.gateway_id) != (
            self.gateway_id
        ):
            self._log.warning("ignoring a backend ack for another gateway or not an object")
            return
        ids = body.get("ids")
        acked = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
        seq = body.get("contiguous_seq")
        numbering = str(body.get("outbox_id", self.outbox_id))[:32]
        if numbering != self.outbox_id and seq is not None:
            # A count in another numbering (this gateway re-installed, its outbox rebuilt):
            # applied here it would mark punches delivered that the backend does not have.
            if numbering != self._foreign_numbering:
                self._foreign_numbering = numbering
                self._log.warning(
                    "ignoring contiguous_seq of a backend ack for another outbox numbering; "
                    "its ids still count: track seqs per gateway_id and outbox_id",
                    ack_outbox_id=numbering,
                    outbox_id=self.outbox_id,
                )
            seq = None
        if isinstance(seq, int) and not isinstance(seq, bool):
            acked.extend(self.window.ids_up_to(seq))
            for batch in self._dropped:  # sent by this process, then given up waiting for
                late = [i for s, i in zip(batch.seqs, batch.ids, strict=True) if s <= seq]
                acked.extend(i for i in late if i in batch.remaining)
                batch.remaining.difference_update(late)
        done, seqs, unknown = self.window.ack_ids(dict.fromkeys(acked))  # each id once
        self.in_flight -= sum(len(b.ids) for b in done)
        self.to_deliver_seqs.extend(seqs)  # in flight: marked by seq ranges
        # Ids outside the window (acks after a re-send) are still the backend's word.
        self.to_deliver.extend(unknown)
        if seqs or unknown:
            self._acked()

    def request_rewind(self) -> None:
        self.rewind = True
        self.more = True

    def wake(self) -> None:
        self.more = True

    def close(self) -> None:
        """Stop the read-ahead threads and close their connections (idempotent)."""
        self._reader.close()

    # -- the round ----------------------------------------------------------------------------

    def commit(self, now: float | None = None) -> None:
        """Record deliveries in one transaction; on failure the rows stay pending (re-sent).

        With ``now``, only when due: acks are gathered for up to ``COMMIT_DELAY`` or
        ``COMMIT_ROWS`` punches, and recorded at once when nothing is left in flight (a
        transaction per PUBACK took twice the time in the drain benchmark). A crash in between
        loses only marks: those punches are re-sent with the same ids.
        """
        waiting = len(self.to_deliver_seqs) + len(self.to_deliver)
        if not waiting:
            return
        if now is not None and self.window and waiting < COMMIT_ROWS and now < self.commit_due:
            return
        self.commit_due = float("inf")
        if self.to_deliver_seqs:
            seqs, self.to_deliver_seqs = self.to_deliver_seqs, []
            self.delivered += self.outbox.mark_delivered_seqs(seqs)
        if self.to_deliver:  # counted only if still pending: an id may be acked twice
            ids, self.to_deliver = self.to_deliver, []
            self.delivered += self.outbox.mark_delivered(ids)

    def _acked(self) -> None:
        if self.commit_due == float("inf"):
            self.commit_due = self._clock() + COMMIT_DELAY
        if self._silent:  # heard from again: re-send at once next time, and stop waiting
            self._log.info(
                "acknowledgements resumed", ack=self.options.ack, timeouts_in_a_row=self._silent
            )
            self._silent = 0
            self.silence = None
            if self.hold_until == self._silence_hold:
                self.hold_until = 0.0

    def drop_window(self, why: str) -> None:
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
            self._publish_staged(now)

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
