"""The delivery worker: drains the outbox to MQTT, at least once, in sequence order.

One thread owns all delivery state (the ``Drain``: cursor, in-flight window, marks). paho
callbacks only put events on a queue, so no lock of ours is ever held across ``publish()`` and
``on_publish`` (the known paho deadlock), and a PUBACK is never processed before its batch was
recorded. The worker also publishes the gateway's retained status (birth on every connect,
"offline" on clean shutdown, the same bytes as last will) and the terminals' status
(``agent/mqtt/status_publishing.py``), stops in order (``agent/mqtt/shutdown.py``), and runs
the built-in commands ``ping`` and ``resend``. It holds at most the in-flight window in memory:
a broker down for hours costs disk, nothing else.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import structlog

from agent import __version__
from agent.mqtt.commands import CommandDispatcher, CommandFailed, Handler
from agent.mqtt.connection import MqttConnection, Published, Will
from agent.mqtt.contract import Contract, Topics, encode
from agent.mqtt.drain import Drain
from agent.mqtt.options import MqttOptions
from agent.mqtt.shutdown import ShutdownMethods
from agent.mqtt.status import GatewayIdentity
from agent.mqtt.status_publishing import StatusPublishing
from buffer.outbox import Outbox
from config.errors import PunchgateError
from drivers.backoff import Backoff

_SWITCH_INTERVAL = 0.001  # s; see DeliveryWorker.start

log = structlog.get_logger("mqtt.delivery")

Clock = Callable[[], float]


@dataclass(frozen=True)
class DeliveryStatus:
    """What ``punchgate status`` shows about delivery."""

    connected: bool
    broker_url: str | None
    last_error: str | None
    delivered: int
    in_flight: int
    ack: str
    connects: int
    reconnect_attempts: int = 0  # delays since a connection last held (see MqttConnection)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


class DeliveryWorker(StatusPublishing, ShutdownMethods):
    """Publishes outbox rows to ``{prefix}/{gateway_id}/punches``; see the module docstring."""

    def __init__(
        self,
        options: MqttOptions,
        outbox: Outbox,
        gateway_id: str,
        site: str = "",
        *,
        boot: int = 0,
        version: str = __version__,
        clock: Clock = time.monotonic,
        contract: Contract | None = None,
        started: tuple[datetime, float] | None = None,
    ) -> None:
        # ``started``: when the agent started (wall time, and ``clock()`` then). A worker built
        # by a reload keeps the agent's: started_at and uptime_s are not the reload's.
        self.options = options
        self.outbox = outbox
        self.topics = Topics(options.topic_prefix, gateway_id)
        self.site = site
        self.clock = clock
        self.contract = contract or Contract.load()
        started_at, self._started_mono = started or (datetime.now(UTC), clock())
        self.identity = GatewayIdentity(
            gateway_id, site, version, boot, started_at, outbox.outbox_id()
        )
        self._backend = options.ack == "backend"
        subscriptions: list[tuple[str, int]] = []
        if self._backend:
            subscriptions.append((self.topics.ack, 1))
        if options.commands:
            subscriptions.append((self.topics.commands, 1))
        self.connection = MqttConnection(
            options,
            self,
            subscriptions=subscriptions,
            will=Will(self.topics.status, encode(self.identity.offline())),
            name=f"mqtt-net-{gateway_id}",
        )
        self.commands = CommandDispatcher(
            self.topics,
            self.contract,
            self.connection,
            max_bytes=options.max_command_bytes,
            v5=options.protocol == "5",
        )
        self.commands.register("ping", "command-ping", self._ping)
        self.commands.register("resend", "command-resend", self._resend)
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mqtt-delivery", daemon=True)
        self._log = log.bind(gateway=gateway_id)
        self.drain = Drain(
            options,
            outbox,
            gateway_id,
            site,
            self._publish_batch,
            clock,
            self._log,
            payload_limit=lambda: self.connection.max_payload,
        )
        # Worker-thread state (no lock: only the worker thread touches it).
        self._devices: dict[str, dict[str, Any]] = {}
        self._removed: dict[str, dict[str, Any]] = {}  # last status of removed terminals
        self._flush_waiters: list[Future[bool]] = []
        self._next_status = 0.0
        self._stop_deadline: float | None = None
        self._offline_mid: tuple[int, int] | None = None
        self._offline_acked = False

    # -- public API (any thread) --------------------------------------------------------------

    def start(self) -> DeliveryWorker:
        """Start the worker, command and network threads."""
        # The worker, paho's network thread and the read-ahead thread hand the GIL to each
        # other around every SQLite and socket call; at Python's default 5 ms switch interval
        # a thread coming back from such a call can wait that long for a busy one. 1 ms made
        # the drain benchmark 10-15 % faster. Process-wide, and as wanted for the whole daemon.
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL))
        self.commands.start()
        self._thread.start()
        self.connection.start()
        return self

    @property
    def alive(self) -> bool:
        """True while the worker thread runs (between ``start()`` and the end of ``stop()``)."""
        return self._thread.is_alive()

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox has nothing pending and nothing is in flight; False on timeout."""
        future: Future[bool] = Future()
        self._events.put(("flush", future))
        try:
            return future.result(timeout)
        except FutureTimeout:
            return False

    def wake(self) -> None:
        """Tell the worker new rows are in the outbox (else it looks every ``poll_interval``)."""
        self._events.put(("wake",))

    def status(self) -> DeliveryStatus:
        """Delivery as ``punchgate status`` shows it, now (any thread)."""
        conn = self.connection.status()
        return DeliveryStatus(
            connected=conn.connected,
            broker_url=conn.broker_url,
            last_error=self.drain.failing or self.drain.silence or conn.last_error,
            delivered=self.drain.delivered,
            in_flight=self.drain.in_flight,
            ack=self.options.ack,
            connects=conn.connects,
            reconnect_attempts=conn.reconnect_attempts,
        )

    def register_command(self, name: str, schema: str | dict[str, Any], handler: Handler) -> None:
        """Accept ``{prefix}/{gw}/cmd/{name}``; ``schema`` is a contract schema name or a schema."""
        self.commands.register(name, schema, handler)

    # -- ConnectionHandler (network thread: hand over, never block) ---------------------------

    def on_connected(self, generation: int, broker_url: str) -> None:
        self._events.put(("connected", generation, broker_url))

    def on_disconnected(self, generation: int, reason: str) -> None:
        self._events.put(("disconnected", generation, reason))

    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> None:
        self._events.put(("puback", generation, mid, ok, reason))

    def on_message(self, generation: int, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topics.ack:
            # A retained ack is old news the broker replays at every connect (MQTT 3.1.1 only:
            # MQTT 5 subscribes with Retain Handling 2); it would mark rows a 'resend' put back.
            if message.retain:
                self._log.warning(
                    "ignoring a retained backend ack; the backend must publish acks unretained",
                    size=len(message.payload),
                )
                return
            self._events.put(("ack", bytes(message.payload)))
        else:
            self.commands.submit(message)

    # -- commands -----------------------------------------------------------------------------

    def _ping(self, _request: dict[str, Any]) -> dict[str, Any]:
        stats = self.outbox.stats()
        conn = self.connection.status()
        return {
            "pong": True,
            "version": self.identity.version,
            "boot": self.identity.boot,
            "uptime_s": round(self.clock() - self._started_mono, 3),
            "broker": conn.broker_url,
            "backlog": stats.pending,
            "oldest_pending_age_s": stats.oldest_pending_age_s,
            "delivered": self.drain.delivered,
            "commands": self.commands.names,
        }

    def _resend(self, request: dict[str, Any]) -> dict[str, Any]:
        from_seq = int(request["from_seq"])
        try:
            requeued = self.outbox.redeliver_from(from_seq)
        except PunchgateError as exc:
            raise CommandFailed(f"cannot schedule redelivery: {exc}") from exc
        self._events.put(("rewind",))
        stats = self.outbox.stats()
        return {"from_seq": from_seq, "requeued": requeued, "backlog": stats.pending}

    # -- worker thread ------------------------------------------------------------------------

    def _publish_batch(self, body: bytes) -> Published | None:
        return self.connection.publish(self.topics.punches, body, qos=1)

    def _run(self) -> None:
        errors = Backoff(0.5, 30.0)
        drain = self.drain
        while True:
            try:
                if self._step():
                    break
                errors.reset()
            except Exception as exc:  # noqa: BLE001 - delivery must outlive any single failure
                message = f"{type(exc).__name__}: {exc}"
                if message != drain.failing:
                    self._log.error("delivery step failed; retrying", error=message)
                drain.failing = message
                drain.hold_until = self.clock() + errors.next_delay()
                drain.request_rewind()  # what was published may not have been recorded
            else:
                if drain.failing is not None and not drain.rewind:
                    self._log.info("delivery recovered")
                    drain.failing = None
        self._shutdown()

    def _step(self) -> bool:
        """One round: events, marks, timeouts, refill. True when asked to stop."""
        drain = self.drain
        event: tuple[Any, ...] | None = self._wait_event()
        stop = False
        while event is not None:
            stop = self._handle(event) or stop
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None
        now = self.clock()
        drain.commit(None if stop else now)
        if stop:
            return True
        drain.check_ack_timeout(now)
        drain.fill(now)
        self._resolve_flushes()
        if drain.generation and now >= self._next_status:
            self._publish_birth()
        return False

    def _wait_event(self) -> tuple[Any, ...] | None:
        """The next event, waiting no longer than until there is something to do."""
        now = self.clock()
        timeout = self.drain.wait_timeout(now)
        if self.drain.generation:
            timeout = min(timeout, self._next_status - now)
        try:
            if timeout > 0:
                return self._events.get(timeout=timeout)
            return self._events.get_nowait()
        except queue.Empty:
            return None

    def _handle(self, event: tuple[Any, ...]) -> bool:
        kind = event[0]
        drain = self.drain
        if kind == "puback":
            if self._offline_mid == (event[1], event[2]):
                self._offline_acked = True
            elif not self.commands.on_published(*event[1:]):
                drain.on_puback(*event[1:])
        elif kind == "ack":
            drain.on_backend_ack(event[1])
        elif kind == "connected":
            drain.connected(event[1])
            self._announce()
        elif kind == "disconnected":
            drain.disconnected(event[1], event[2])
        elif kind == "wake":
            drain.wake()
        elif kind == "rewind":
            drain.request_rewind()
        elif kind == "device":
            self._device_changed(event[1], event[2])
        elif kind == "forget":
            self._device_forgotten(event[1])
        elif kind == "flush":
            self._flush_waiters.append(event[1])
            drain.wake()
        elif kind == "stop":
            self._stop_deadline = event[1]
            return True
        return False

    def _resolve_flushes(self) -> None:
        # Not drain.idle(): with the broker down the drain never learns there is nothing more,
        # yet an empty outbox is flushed whether connected or not.
        if (
            not self._flush_waiters
            or self.drain.window
            or self.drain.to_deliver
            or self.drain.to_deliver_seqs
        ):
            return
        if self.outbox.stats().pending == 0:
            for future in self._flush_waiters:
                if not future.done():
                    future.set_result(True)
            self._flush_waiters.clear()
