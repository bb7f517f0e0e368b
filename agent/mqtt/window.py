"""The in-flight window: batches published but not yet acknowledged, and what acks complete them.

Owned by the delivery worker's thread alone, so it needs no lock. Its size is bounded by
``inflight`` batches of at most ``batch_size`` punches: this is all the memory delivery holds,
however large the backlog in the outbox.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class InFlight:
    """One published batch."""

    mid: tuple[int, int]  # (connection generation, MQTT message id)
    seqs: list[int]
    ids: list[str]
    sent_at: float
    pubacked: bool = False
    remaining: set[str] = field(default_factory=set)  # backend mode: ids not yet acknowledged

    @property
    def first_seq(self) -> int:
        return self.seqs[0]

    def unacked_seqs(self, backend: bool) -> list[int]:
        """Seqs not acknowledged yet (backend mode: some ids of a batch may be)."""
        if not backend:
            return list(self.seqs)
        return [s for s, i in zip(self.seqs, self.ids, strict=True) if i in self.remaining]


class Window:
    """Batches in flight on the current connection, keyed by MQTT message id."""

    def __init__(self) -> None:
        self._by_mid: dict[tuple[int, int], InFlight] = {}
        # Backend mode: id -> (batch mid, seq) of every punch not yet acknowledged.
        self._slot_of_id: dict[str, tuple[tuple[int, int], int]] = {}

    def __len__(self) -> int:
        return len(self._by_mid)

    def __bool__(self) -> bool:
        return bool(self._by_mid)

    def add(self, batch: InFlight, *, track_ids: bool) -> None:
        self._by_mid[batch.mid] = batch
        if track_ids:
            batch.remaining = set(batch.ids)
            mid = batch.mid
            for seq, punch_id in zip(batch.seqs, batch.ids, strict=True):
                self._slot_of_id[punch_id] = (mid, seq)

    def get(self, mid: tuple[int, int]) -> InFlight | None:
        return self._by_mid.get(mid)

    def pop(self, mid: tuple[int, int]) -> InFlight | None:
        batch = self._by_mid.pop(mid, None)
        if batch is not None:
            for punch_id in batch.remaining:
                self._slot_of_id.pop(punch_id, None)
        return batch

    def ack_ids(self, ids: Iterable[str]) -> tuple[list[InFlight], list[int], list[str]]:
        """Record backend acks by id.

        Returns the batches now fully acknowledged (removed), the seqs of the acknowledged
        punches found in the window, and the ids that were not in it (acks after a re-send).
        """
        done: list[InFlight] = []
        seqs: list[int] = []
        unknown: list[str] = []
        for punch_id in ids:
            slot = self._slot_of_id.pop(punch_id, None)
            if slot is None:
                unknown.append(punch_id)
                continue
            mid, seq = slot
            seqs.append(seq)
            batch = self._by_mid[mid]
            batch.remaining.discard(punch_id)
            if not batch.remaining:
                done.append(batch)
                del self._by_mid[mid]
        return done, seqs, unknown

    def ids_up_to(self, seq: int) -> list[str]:
        """Ids in flight, not yet acknowledged, with a seq <= ``seq``."""
        acked: list[str] = []
        for batch in self._by_mid.values():
            for s, punch_id in zip(batch.seqs, batch.ids, strict=True):
                if s <= seq and punch_id in batch.remaining:
                    acked.append(punch_id)
        return acked

    def oldest_sent_at(self) -> float | None:
        return min((b.sent_at for b in self._by_mid.values()), default=None)

    def clear(self) -> list[InFlight]:
        batches = list(self._by_mid.values())
        self._by_mid.clear()
        self._slot_of_id.clear()
        return batches
