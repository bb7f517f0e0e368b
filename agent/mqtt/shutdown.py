"""The delivery worker's ordered stop: finish in-flight batches, say "offline", disconnect.

``stop()`` asks the worker thread to stop by a deadline; the thread gives half of the time left
to the batches in flight, then publishes the retained "offline" status and waits for its
PUBACK, records the deliveries it heard of, and closes the connection and the outbox readers.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import structlog

from agent.mqtt.commands import CommandDispatcher
from agent.mqtt.connection import MqttConnection
from agent.mqtt.contract import Topics, encode
from agent.mqtt.drain import Drain
from agent.mqtt.status import GatewayIdentity
from config.errors import PunchgateError


class ShutdownMethods:
    """Mixed into ``DeliveryWorker``, which provides the attributes declared here."""

    topics: Topics
    identity: GatewayIdentity
    connection: MqttConnection
    commands: CommandDispatcher
    drain: Drain
    _events: queue.SimpleQueue[tuple[Any, ...]]
    _thread: threading.Thread
    _log: structlog.typing.FilteringBoundLogger
    _flush_waiters: list[Future[bool]]
    _stop_deadline: float | None
    _offline_mid: tuple[int, int] | None
    _offline_acked: bool

    if TYPE_CHECKING:

        def _handle(self, event: tuple[Any, ...]) -> bool: ...  # DeliveryWorker

    def stop(self, timeout: float = 10.0) -> None:
        """Finish in-flight batches, publish "offline", disconnect cleanly, within ``timeout``."""
        deadline = time.monotonic() + timeout
        if self._thread.is_alive():
            # Keep a little of the budget for the disconnect and the joins below.
            self._events.put(("stop", deadline - min(0.25, timeout / 10)))
            self._thread.join(max(0.0, deadline - time.monotonic()))
        else:
            self.connection.close(max(0.05, deadline - time.monotonic()))
            self.drain.close()  # never started: its readers' connections are still open
        self.commands.stop(max(0.0, deadline - time.monotonic()))

    def _shutdown(self) -> None:
        """Let in-flight batches finish, say "offline", and disconnect cleanly."""
        # Real time, not self.clock: these loops must end even under a test's frozen clock.
        deadline = self._stop_deadline or (time.monotonic() + 5.0)
        grace = time.monotonic() + max(0.0, (deadline - time.monotonic()) / 2)
        while self.drain.window and self.drain.generation and time.monotonic() < grace:
            self._drain_events(min(0.05, max(0.0, grace - time.monotonic())))
        if self.drain.generation:
            body = encode(self.identity.offline())
            published = self.connection.publish(self.topics.status, body, qos=1, retain=True)
            if published is not None:
                self._offline_mid = (published.generation, published.mid)
                while (
                    not self._offline_acked
                    and self.drain.generation
                    and time.monotonic() < deadline
                ):
                    self._drain_events(min(0.05, max(0.0, deadline - time.monotonic())))
        for future in self._flush_waiters:
            if not future.done():
                future.set_result(False)
        self.connection.close(max(0.05, deadline - time.monotonic()))
        self.drain.close()
        self._log.info(
            "delivery stopped",
            delivered=self.drain.delivered,
            offline_published=self._offline_acked,
        )

    def _drain_events(self, timeout: float) -> None:
        try:
            event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            return
        while True:
            if event[0] not in ("stop", "flush", "connected"):
                self._handle(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
        try:
            self.drain.commit()
        except PunchgateError as exc:
            self._log.warning("could not record deliveries at shutdown", error=str(exc))
