"""The outbox as device workers see it: storing punches also wakes the delivery worker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from config.errors import OutboxError
from drivers.base import Punch


class PunchSink(Protocol):
    """The part of the outbox a device worker needs."""

    def add_punches(
        self,
        punches: Sequence[Punch],
        *,
        device_id: str | None = None,
        watermark: dict[str, Any] | None = None,
        device_serial: str | None = None,
    ) -> Any:
        """Store a batch (and the watermark covering it) in one transaction."""

    def watermark(self, device_id: str) -> dict[str, Any] | None:
        """What has been read from this terminal."""

    def device_serial(self, device_id: str) -> str | None:
        """The serial number last seen for this device."""


# Punches per outbox transaction when a read returns many (a full log after an outage): the
# outbox is one lock, and a 100,000-record log stored at once held every other terminal's
# live punches, and delivery, for ~2 s; in chunks of this size they get in between.
STORE_CHUNK = 5000


def store_in_chunks(
    sink: PunchSink,
    punches: Sequence[Punch],
    chunk: int,
    *,
    device_id: str,
    watermark: dict[str, Any] | None,
    serial: str | None,
    progress: Callable[[], None],
) -> tuple[int, int]:
    """Store ``punches`` ``chunk`` at a time, the watermark with the last; (inserted, duplicates).

    A crash in between leaves the earlier chunks stored under the old watermark: the terminal
    is read again from there and those punches come back as duplicates (same ids), and
    nothing is cleared from it before the last chunk, watermark included, is committed.
    ``progress`` is called after each chunk but the last.
    """
    inserted = duplicates = 0
    starts = range(0, len(punches), chunk) if punches else range(1)
    for start in starts:
        part = punches[start : start + chunk]
        last = start + chunk >= len(punches)
        result = sink.add_punches(
            part,
            device_id=device_id,
            watermark=watermark if last else None,
            device_serial=serial,
        )
        inserted += int(getattr(result, "inserted", len(part)))
        duplicates += int(getattr(result, "duplicates", 0))
        if not last:
            progress()
    return inserted, duplicates


class _Waker(Protocol):
    def wake(self) -> None: ...


class WakingSink:
    """Delegates to the current outbox; a stored punch is published at once, not at next poll.

    Both are looked up on every call because a reload may replace the delivery worker.
    """

    def __init__(
        self, outbox: Callable[[], PunchSink | None], delivery: Callable[[], _Waker | None]
    ) -> None:
        self._outbox = outbox
        self._delivery = delivery

    def _box(self) -> PunchSink:
        box = self._outbox()
        if box is None:
            raise OutboxError("the outbox is not open (the daemon is starting or stopping)")
        return box

    def add_punches(
        self,
        punches: Sequence[Punch],
        *,
        device_id: str | None = None,
        watermark: dict[str, Any] | None = None,
        device_serial: str | None = None,
    ) -> Any:
        result = self._box().add_punches(
            punches, device_id=device_id, watermark=watermark, device_serial=device_serial
        )
        if getattr(result, "inserted", 0):
            delivery = self._delivery()
            if delivery is not None:
                delivery.wake()
        return result

    def watermark(self, device_id: str) -> dict[str, Any] | None:
        return self._box().watermark(device_id)

    def device_serial(self, device_id: str) -> str | None:
        return self._box().device_serial(device_id)
