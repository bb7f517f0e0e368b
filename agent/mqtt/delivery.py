"""The delivery worker: drains the outbox to MQTT, at least once, in sequence order.

One thread owns all delivery state (cursor, in-flight window, pending marks). paho callbacks only
put events on a queue, so no lock of ours is ever held across ``publish()`` and ``on_publish``
(the known paho deadlock), and a PUBACK can never be processed before its batch was recorded.

A row is marked delivered on a successful PUBACK (``ack = "broker"``) or only on the backend's
acknowledgement (``ack = "backend"``). Whatever was in flight when the connection dropped, was
refused by the broker, or was not acknowledged within ``ack_timeout`` is published again from
the outbox (same id, ``replayed: true``). The worker holds at most the in-flight window in
memory: a broker down for hours costs disk, nothing else.
"""

from __future__ import annotations

import json
import queue
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
from agent.mqtt.backoff import Backoff
from agent.mqtt.commands import CommandDispatcher, CommandFailed, Handler
from agent.mqtt.connection import MqttConnection, Will
from agent.mqtt.contract import Contract, ContractViolation, Topics, encode
from agent.mqtt.encoding import PunchEncoder
from agent.mqtt.options import MqttOptions
from agent.mqtt.status import DeviceStatus, GatewayIdentity
from agent.mqtt.window import InFlight, Window
from buffer.outbox import Outbox
from buffer.records import StoredPunch
from config.errors import PunchgateError

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeliveryWorker:
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
    ) -> None:
        self.options = options
        self.outbox = outbox
        self.topics = Topics(options.topic_prefix, gateway_id)
        self.site = site
        self.clock = clock
        self.contract = contract or Contract.load()
        self.identity = GatewayIdentity(gateway_id, site, version, boot, datetime.now(UTC))
        self._started_mono = clock()
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
        # Worker-thread state (no lock: only the worker thread touches it).
        self._window = Window()
        self._encoder = PunchEncoder(site)
        self._refill_at = max(1, options.inflight // 2)
        self._generation = 0
        self._cursor = 0
        self._more = True
        self._rewind = False
        self._hold_until = 0.0
        self._retry = Backoff(options.reconnect_min, options.reconnect_max)
        self._to_deliver: list[str] = []
        self._devices: dict[str, dict[str, Any]] = {}
        self._flush_waiters: list[Future[bool]] = []
        self._next_status = 0.0
        self._next_poll = 0.0
        self._stop_deadline: float | None = None
        self._offline_mid: tuple[int, int] | None = None
        self._offline_acked = False
        self._failing: str | None = None
        # Read by other threads: plain counters, each one assignment.
        self._delivered = 0
        self._in_flight_punches = 0

    # -- public API (any thread) --------------------------------------------------------------

    def start(self) -> DeliveryWorker:
        """Start the worker, command and network threads."""
        self.commands.start()
        self._thread.start()
        self.connection.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish in-flight batches, publish "offline", disconnect cleanly, within ``timeout``."""
        deadline = time.monotonic() + timeout
        if self._thread.is_alive():
            # Keep a little of the budget for the disconnect and the joins below.
            self._events.put(("stop", deadline - min(0.25, timeout / 10)))
            self._thread.join(max(0.0, deadline - time.monotonic()))
        else:
            self.connection.close(max(0.05, deadline - time.monotonic()))
        self.commands.stop(max(0.0, deadline - time.monotonic()))

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
        conn = self.connection.status()
        return DeliveryStatus(
            connected=conn.connected,
            broker_url=conn.broker_url,
            last_error=self._failing or conn.last_error,
            delivered=self._delivered,
            in_flight=self._in_flight_punches,
            ack=self.options.ack,
            connects=conn.connects,
        )

    def publish_device_status(self, device_id: str, status: DeviceStatus | dict[str, Any]) -> None:
        """Publish (retained) a terminal's status now or on the next connect.

        Raises ``ContractViolation`` (a ``ValueError``) if the payload does not fit the contract.
        """
        payload = (
            status.payload(self.topics.gateway_id) if isinstance(status, DeviceStatus) else status
        )
        if payload.get("device_id") != device_id:
            raise ContractViolation(
                f"device status payload is for {payload.get('device_id')!r}, not {device_id!r}"
            )
        self.contract.validate("device-status", payload)
        self._events.put(("device", device_id, payload))

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
            "delivered": self._delivered,
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

    def _run(self) -> None:
        errors = Backoff(0.5, 30.0)
        while True:
            try:
                if self._step():
                    break
                errors.reset()
            except Exception as exc:  # noqa: BLE001 - delivery must outlive any single failure
                message = f"{type(exc).__name__}: {exc}"
                if message != self._failing:
                    self._log.error("delivery step failed; retrying", error=message)
                self._failing = message
                self._hold_until = self.clock() + errors.next_delay()
                self._rewind = True  # what was published may not have been recorded
            else:
                if self._failing is not None and not self._rewind:
                    self._log.info("delivery recovered")
                    self._failing = None
        self._shutdown()

    def _step(self) -> bool:
        """One round: events, marks, timeouts, refill. True when asked to stop."""
        event: tuple[Any, ...] | None = self._wait_event()
        stop = False
        while event is not None:
            stop = self._handle(event) or stop
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None
        self._commit_marks()
        if stop:
            return True
        now = self.clock()
        self._check_ack_timeout(now)
        self._fill(now)
        self._resolve_flushes()
        if self._generation and now >= self._next_status:
            self._publish_birth()
        return False

    def _wait_event(self) -> tuple[Any, ...] | None:
        """The next event, waiting no longer than until the worker has something to do."""
        now = self.clock()
        free = self.options.inflight - len(self._window)
        can_fill = (
            self._generation
            and (free >= self._refill_at or (free > 0 and not self._window))
            and now >= self._hold_until
            and not (self._rewind and self._window)
        )
        if can_fill and self._more:
            timeout = 0.0
        else:
            timeout = self.options.poll_interval
            if can_fill:
                timeout = min(timeout, self._next_poll - now)
            if self._hold_until > now:
                timeout = min(timeout, self._hold_until - now)
            oldest = self._window.oldest_sent_at()
            if oldest is not None:
                timeout = min(timeout, oldest + self.options.ack_timeout - now)
            if self._generation:
                timeout = min(timeout, self._next_status - now)
        try:
            if timeout > 0:
                return self._events.get(timeout=timeout)
            return self._events.get_nowait()
        except queue.Empty:
            return None

    def _handle(self, event: tuple[Any, ...]) -> bool:
        kind = event[0]
        if kind == "puback":
            self._on_puback(*event[1:])
        elif kind == "ack":
            self._on_backend_ack(event[1])
        elif kind == "connected":
            self._generation = event[1]
            self._cursor = 0
            self._more = True
            self._rewind = False
            self._hold_until = 0.0
            self._publish_birth()
            for payload in self._devices.values():
                self._publish_device(payload)
        elif kind == "disconnected":
            if event[1] == self._generation:
                self._generation = 0
            self._drop_window(f"connection lost: {event[2]}")
        elif kind == "wake":
            self._more = True
        elif kind == "rewind":
            self._rewind = True
            self._more = True
        elif kind == "device":
            self._devices[event[1]] = event[2]
            if self._generation:
                self._publish_device(event[2])
        elif kind == "flush":
            self._flush_waiters.append(event[1])
            self._more = True
        elif kind == "stop":
            self._stop_deadline = event[1]
            return True
        return False

    def _on_puback(self, generation: int, mid: int, ok: bool, reason: str) -> None:
        if self._offline_mid == (generation, mid):
            self._offline_acked = True
            return
        batch = self._window.get((generation, mid))
        if batch is None:
            return  # a status message or command reply, or a batch already written off
        if not ok:
            self._window.pop((generation, mid))
            self._written_off([batch])
            error = f"broker refused the batch: {reason}"
            self._log.warning(
                "broker refused a batch; will re-send",
                reason=reason,
                first_seq=batch.first_seq,
                punches=len(batch.ids),
            )
            self.outbox.mark_failed(batch.ids, error)
            self._failing = error
            self._rewind = True
            self._hold_until = self.clock() + self._retry.next_delay()
            return
        self._retry.reset()
        if self._backend:
            batch.pubacked = True
            return
        self._window.pop((generation, mid))
        self._written_off([batch])
        self._to_deliver.extend(batch.ids)

    def _on_backend_ack(self, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            self._log.warning("ignoring a backend ack that is not JSON", size=len(payload))
            return
        if not isinstance(body, dict) or body.get("gateway_id", self.topics.gateway_id) != (
            self.topics.gateway_id
        ):
            self._log.warning("ignoring a backend ack for another gateway or not an object")
            return
        ids = body.get("ids")
        acked = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
        done = self._window.ack_ids(acked)
        seq = body.get("contiguous_seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            more, done_more = self._window.ack_up_to(seq)
            acked.extend(more)
            done.extend(done_more)
        self._in_flight_punches -= sum(len(b.ids) for b in done)
        self._to_deliver.extend(acked)

    def _commit_marks(self) -> None:
        if not self._to_deliver:
            return
        ids, self._to_deliver = self._to_deliver, []
        self.outbox.mark_delivered(ids)  # raises: rows stay pending and are re-sent later
        self._delivered += len(ids)

    def _written_off(self, batches: list[InFlight]) -> None:
        self._in_flight_punches -= sum(len(b.ids) for b in batches)

    def _drop_window(self, why: str) -> None:
        dropped = self._window.clear()
        self._in_flight_punches = 0
        self._cursor = 0
        self._rewind = False
        self._more = True
        if dropped:
            self._log.info(
                "re-sending in-flight batches later",
                why=why,
                batches=len(dropped),
                first_seq=min(b.first_seq for b in dropped),
            )

    def _check_ack_timeout(self, now: float) -> None:
        oldest = self._window.oldest_sent_at()
        if oldest is None or now - oldest < self.options.ack_timeout:
            return
        self._log.warning(
            "no acknowledgement within ack_timeout; re-sending",
            ack=self.options.ack,
            ack_timeout_s=self.options.ack_timeout,
        )
        self._drop_window("ack timeout")

    def _fill(self, now: float) -> None:
        opts = self.options
        if not self._generation or now < self._hold_until:
            return
        if not self._more and now < self._next_poll:
            return
        if self._rewind:
            if self._window:
                return  # wait for the window to drain, then start again from the lowest row
            self._cursor = 0
            self._rewind = False
        free = opts.inflight - len(self._window)
        if free <= 0 or (self._window and free < self._refill_at):
            return  # refill in chunks: one read and one mark_sent for several batches
        limit = free * opts.batch_size
        rows = self.outbox.next_batch(limit, after_seq=self._cursor)
        self._more = len(rows) == limit
        if not self._more:
            self._next_poll = now + opts.poll_interval
        if not rows:
            return
        batches = self._split(rows)
        if len(batches) > free:
            batches = batches[:free]
            self._more = True
        self.outbox.mark_sent([p.id for b in batches for p in b[0]])
        for punches, body in batches:
            published = self.connection.publish(self.topics.punches, body, qos=1)
            if published is None:
                self._more = True
                return  # disconnected meanwhile: the disconnect event rewinds
            self._window.add(
                InFlight(
                    mid=(published.generation, published.mid),
                    seqs=[p.seq for p in punches],
                    ids=[p.id for p in punches],
                    sent_at=now,
                ),
                track_ids=self._backend,
            )
            self._in_flight_punches += len(punches)
            self._cursor = punches[-1].seq

    def _split(self, rows: list[StoredPunch]) -> list[tuple[list[StoredPunch], bytes]]:
        """Encode rows into batches of at most ``batch_size`` punches and about ``batch_bytes``."""
        opts = self.options
        head = b'{"gateway_id":' + json.dumps(self.topics.gateway_id).encode() + b',"punches":['
        out: list[tuple[list[StoredPunch], bytes]] = []
        punches: list[StoredPunch] = []
        parts: list[bytes] = []
        size = len(head) + 2
        for row in rows:
            part = self._encoder.encode(row)
            if punches and (
                len(punches) >= opts.batch_size or size + len(part) + 1 > opts.batch_bytes
            ):
                out.append((punches, head + b",".join(parts) + b"]}"))
                punches, parts, size = [], [], len(head) + 2
            punches.append(row)
            parts.append(part)
            size += len(part) + 1
        if punches:
            out.append((punches, head + b",".join(parts) + b"]}"))
        return out

    def _resolve_flushes(self) -> None:
        if not self._flush_waiters or self._window or self._more or self._to_deliver:
            return
        if self.outbox.stats().pending == 0:
            for future in self._flush_waiters:
                if not future.done():
                    future.set_result(True)
            self._flush_waiters.clear()

    def _publish_birth(self) -> None:
        stats = self.outbox.stats()
        payload = self.identity.online(
            broker=self.connection.status().broker_url,
            devices={d: p["state"] for d, p in self._devices.items()},
            backlog=stats.pending,
            oldest_pending_age_s=stats.oldest_pending_age_s,
            delivered=self._delivered,
        )
        self.connection.publish(self.topics.status, encode(payload), qos=1, retain=True)
        self._next_status = self.clock() + self.options.status_interval

    def _publish_device(self, payload: dict[str, Any]) -> None:
        topic = self.topics.device_status(payload["device_id"])
        self.connection.publish(topic, encode(payload), qos=1, retain=True)

    def _shutdown(self) -> None:
        """Let in-flight batches finish, say "offline", and disconnect cleanly."""
        # Real time, not self.clock: these loops must end even under a test's frozen clock.
        deadline = self._stop_deadline or (time.monotonic() + 5.0)
        grace = time.monotonic() + max(0.0, (deadline - time.monotonic()) / 2)
        while self._window and self._generation and time.monotonic() < grace:
            self._drain_events(min(0.05, max(0.0, grace - time.monotonic())))
        if self._generation:
            body = encode(self.identity.offline())
            published = self.connection.publish(self.topics.status, body, qos=1, retain=True)
            if published is not None:
                self._offline_mid = (published.generation, published.mid)
                while not self._offline_acked and self._generation and time.monotonic() < deadline:
                    self._drain_events(min(0.05, max(0.0, deadline - time.monotonic())))
        for future in self._flush_waiters:
            if not future.done():
                future.set_result(False)
        self.connection.close(max(0.05, deadline - time.monotonic()))
        self._log.info(
            "delivery stopped", delivered=self._delivered, offline_published=self._offline_acked
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
            self._commit_marks()
        except PunchgateError as exc:
            self._log.warning("could not record deliveries at shutdown", error=str(exc))
