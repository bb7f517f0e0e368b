"""The delivery side of the ``Outbox``: what the MQTT worker calls, as one mixin.

Each method takes the outbox's lock and hands its connection to ``buffer/delivery.py`` or
``buffer/payload.py``; ``payload_reader`` gives a reader with a connection of its own.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from buffer import delivery
from buffer.outbox_host import OutboxHost
from buffer.payload import PayloadReader, PayloadRow, next_payloads, page_end
from buffer.records import StoredPunch


class DeliveryMethods(OutboxHost):
    """Mixed into ``Outbox`` (see ``OutboxHost`` for what it provides)."""

    # -- delivery -----------------------------------------------------------------------------

    def next_batch(
        self, limit: int = 100, *, after_seq: int = 0, max_bytes: int | None = None
    ) -> builtins.list[StoredPunch]:
        """Pending rows with ``seq > after_seq`` in seq order; no lock is held after return."""
        with self._lock:
            return delivery.next_batch(self._db(), self.path, limit, after_seq, max_bytes)

    def next_payloads(
        self, limit: int = 100, *, after_seq: int = 0, site: str = ""
    ) -> builtins.list[PayloadRow]:
        """Like ``next_batch`` but as ``(seq, id, contract JSON or None)``, built by SQLite.

        The delivery worker's hot path: no ``StoredPunch`` is built. A row whose JSON is None
        (suspect, DST-shifted) must be encoded from ``get(id)``.
        """
        with self._lock:
            return next_payloads(self._db(), self.path, limit, after_seq, site)

    def page_end(self, limit: int, after_seq: int) -> int | None:
        """The seq of the ``limit``-th pending row after ``after_seq``; None when fewer."""
        with self._lock:
            return page_end(self._db(), self.path, limit, after_seq)

    def payload_reader(self, site: str) -> PayloadReader:
        """A reader of pending rows as contract JSON on its own connection (for another thread)."""
        return PayloadReader(self.path, self._busy_timeout, site)

    def sent_mark(self) -> int:
        """The highest seq recorded as offered to the broker."""
        with self._lock:
            return delivery.sent_mark(self._db())

    def outbox_id(self) -> str:
        """Names this outbox's ``seq`` numbering: a new outbox numbers from 1 under a new id."""
        with self._lock:
            return delivery.outbox_id(self._db())

    def rewinds(self) -> int:
        """A count that changes when rows behind the delivery worker became pending again."""
        with self._lock:
            return delivery.rewinds(self._db())

    def mark_sent_ahead(self, seq: int, ahead: int) -> int:
        """Raise the sent mark to ``seq + ahead`` (capped at the newest row); returns it."""
        with self._lock:
            return delivery.mark_sent_ahead(self._db(), self.path, seq, ahead)

    def mark_failed_seqs(self, seqs: Sequence[int], error: str) -> int:
        """``mark_failed`` by sequence numbers: a whole in-flight window in one transaction."""
        with self._lock:
            return delivery.mark_failed_seqs(self._db(), self.path, seqs, error)

    def mark_delivered_seqs(self, seqs: Sequence[int]) -> int:
        """``mark_delivered`` by sequence numbers; returns how many were pending."""
        with self._lock:
            return delivery.mark_delivered_seqs(self._db(), self.path, seqs)

    def mark_sent(self, ids: Sequence[str]) -> int:
        """These rows are being offered to the broker: from now on they are ``replayed``."""
        with self._lock:
            return delivery.mark_sent(self._db(), self.path, ids)

    def mark_delivered(self, ids: Sequence[str]) -> int:
        """The backend has these rows; returns how many were pending."""
        with self._lock:
            return delivery.mark_delivered(self._db(), self.path, ids)

    def mark_failed(self, ids: Sequence[str], error: str) -> int:
        """A publish attempt failed; keep the error for diagnostics."""
        with self._lock:
            return delivery.mark_failed(self._db(), self.path, ids, error)

    def redeliver_from(self, seq: int) -> int:
        """Mark delivered rows with ``seq >= N`` pending again; returns how many."""
        with self._lock:
            count = delivery.redeliver_from(self._db(), self.path, seq)
        self._log.info("outbox_redeliver", from_seq=seq, rows=count)
        return count
