"""The outbox as device workers see it: storing punches also wakes the delivery worker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from agent.daemon.device_worker import PunchSink
from config.errors import OutboxError
from drivers.base import Punch


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
