"""Ack bookkeeping of the drain: PUBACKs and backend acks become delivery marks, gathered.

A row is delivered on a successful PUBACK (``ack = "broker"``) or on the backend's
acknowledgement (``ack = "backend"``, by id or by ``contiguous_seq``). A refused batch is
recorded as failed and read again after a back-off. Acks are gathered and recorded in one
transaction for up to ``COMMIT_DELAY`` or ``COMMIT_ROWS`` punches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from agent.mqtt.broker_limits import BrokerLimits
from agent.mqtt.options import MqttOptions
from agent.mqtt.window import InFlight, Window
from buffer.outbox import Outbox
from drivers.backoff import Backoff

COMMIT_DELAY = 0.05  # s: longest an ack waits to be recorded while batches are in flight
COMMIT_ROWS = 2000  # punches: or as soon as this many acks are waiting


class AckMethods:
    """Mixed into ``Drain``, which provides the attributes declared here."""

    options: MqttOptions
    outbox: Outbox
    gateway_id: str
    outbox_id: str
    window: Window
    limits: BrokerLimits
    rewind: bool
    hold_until: float
    failing: str | None
    to_deliver: list[str]
    to_deliver_seqs: list[int]
    commit_due: float
    delivered: int
    in_flight: int
    _backend: bool
    _clock: Callable[[], float]
    _log: structlog.typing.FilteringBoundLogger
    _retry: Backoff
    _refusal_logged: str | None
    _foreign_numbering: str | None
    _dropped: list[InFlight]

    if TYPE_CHECKING:

        def _heard_from(self) -> None: ...  # ResendMethods

    def on_puback(self, generation: int, mid: int, ok: bool, reason: str) -> None:
        """A PUBACK for ``(generation, mid)``: deliver its batch, or record the refusal."""
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
        """A message on the ack topic: deliver the ids and the ``contiguous_seq`` it names."""
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
        self._heard_from()
