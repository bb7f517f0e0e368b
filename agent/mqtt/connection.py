"""One MQTT connection kept up by our own loop: failover, backoff with full jitter, TLS, auth, will.

paho's own reconnect (``loop_start``/``loop_forever``) retries in lock-step without jitter and
re-sends its in-memory queue; we run ``client.loop()`` in our own thread instead and build a fresh
paho client for every connection attempt. Nothing is re-sent by paho: the outbox is the source of
truth and the delivery worker re-publishes whatever was in flight. Each successful connection gets
a new *generation* number so that late callbacks of an old connection can be told apart. The
network thread is also the socket's only writer: ``publish()`` from any thread only queues.

Callbacks into the handler run on the network thread: handlers must only hand work over (queue),
never block, and never call ``publish`` while holding a lock that their callbacks also take.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties

from agent.mqtt.connection_types import ConnectionHandler, ConnectionStatus, Published, Will
from agent.mqtt.diagnose import RenewableSslContext
from agent.mqtt.diagnose import build_ssl_context as build_ssl_context  # the doctor's import
from agent.mqtt.diagnose import describe_connack as describe_connack  # the doctor's import
from agent.mqtt.options import MqttOptions
from agent.mqtt.paho_client import ClientMethods, wake
from agent.mqtt.session import SessionMethods
from config.errors import BrokerError
from drivers.backoff import Backoff
from drivers.netaddr import Resolver

__all__ = [
    "STABLE_AFTER",
    "ConnectionHandler",
    "ConnectionStatus",
    "MqttConnection",
    "Published",
    "Will",
    "build_ssl_context",
    "describe_connack",
]

log = structlog.get_logger("mqtt")

STABLE_AFTER = 10.0  # seconds a connection must last before the reconnect backoff starts over


class MqttConnection(SessionMethods, ClientMethods):
    """Keeps one MQTT connection up across broker URLs until ``close()``."""

    def __init__(
        self,
        options: MqttOptions,
        handler: ConnectionHandler,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        will: Will | None = None,
        name: str = "mqtt-net",
        session_expiry: int = 0,
        manual_ack: bool = False,
        stable_after: float = STABLE_AFTER,
        resolver: Resolver | None = None,
        backoff_rng: random.Random | None = None,
    ) -> None:
        self.options = options
        # One for all attempts: it bounds the lookups a dead DNS server leaves running.
        self._resolver = resolver or Resolver()
        self.handler = handler
        self.subscriptions = list(subscriptions)
        self.will = will
        # 0: a clean session (the agent: the outbox holds its state). A subscriber such as the
        # receiver keeps its session so the broker queues messages while it is away.
        self.session_expiry = session_expiry
        # Incoming QoS 1 messages are acknowledged by ack() after they are safely handled,
        # not by paho as soon as on_message returns.
        self.manual_ack = manual_ack
        self._brokers = options.brokers
        self._ssl_context: RenewableSslContext | None = None
        if any(b.tls for b in self._brokers):
            self._ssl_context = RenewableSslContext(options)
        # ``backoff_rng``: the jitter's random source (tests pass a seeded one that records).
        self._backoff = Backoff(options.reconnect_min, options.reconnect_max, backoff_rng)
        # A connection must last this long (seconds) before the backoff starts over.
        self.stable_after = stable_after
        self._stopping = threading.Event()
        self._connected_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # Read by other threads without a lock: each is one reference assignment.
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._broker_url: str | None = None
        self._last_error: str | None = None
        self._connects = 0
        self._subscribed_generation = 0
        self._max_packet: int | None = None  # the broker's MQTT 5 Maximum Packet Size, if any
        # Brokers that refuse retained messages (Mosquitto ``retain_available false``): their
        # CONNECT carries an unretained will and retained publishes go out unretained.
        self._unretained: set[str] = set()
        self._retain_ok = True  # the current connection's broker takes retained messages
        self._attempting = ""  # the broker URL of the current attempt (network thread only)
        self._said: dict[str, str] = {}  # broker URL -> failure last logged (until connected)
        self._log = log.bind(client_id=options.client_id)

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> MqttConnection:
        self._thread.start()
        return self

    @property
    def connected(self) -> bool:
        return self._connected_event.is_set()

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker granted our subscriptions (acks, commands)."""
        return self.connected and (
            not self.subscriptions or self._subscribed_generation == self._generation
        )

    @property
    def max_payload(self) -> int | None:
        """The largest payload the current broker accepts on our topics, when it said so."""
        if self._max_packet is None:
            return None
        return max(1024, self._max_packet - 512)  # room for the fixed header and the topic

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def reconnect_attempts(self) -> int:
        """Reconnect delays since a connection last held ``stable_after`` s (0 while one holds).

        Failed connects and connections dropped before ``stable_after`` both count, so a broker
        that accepts and drops us at once is retried ever more slowly, up to ``reconnect_max``.
        """
        return self._backoff.attempt

    def status(self) -> ConnectionStatus:
        return ConnectionStatus(
            connected=self.connected,
            broker_url=self._broker_url,
            last_error=self._last_error,
            connects=self._connects,
            generation=self._generation,
            reconnect_attempts=self._backoff.attempt,
        )

    def wait_connected(self, timeout: float) -> None:
        """Block until connected; ``BrokerError`` naming the last failure after ``timeout`` s."""
        if self._connected_event.wait(timeout):
            return
        reason = self._last_error or "no answer from any broker"
        raise BrokerError(
            f"not connected to {', '.join(self.options.urls)} after {timeout:.0f}s: {reason}"
        )

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> Published | None:
        """Hand a message to paho; ``None`` when there is no usable connection right now."""
        client, generation = self._client, self._generation
        if client is None or not self._connected_event.is_set():
            return None
        # A retained publish to a broker without retain support costs the connection (0x9A).
        retain = retain and self._retain_ok
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except OSError:
            # The socket is being torn down by the network thread (broker restart): the same as
            # no connection; the caller keeps the rows pending and publishes after reconnect.
            return None
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return Published(generation, info.mid)

    def ack(self, generation: int, mid: int, qos: int) -> None:
        """Acknowledge an incoming message (``manual_ack``) if its connection is still up.

        After a reconnect the broker re-sends what was not acknowledged, so a stale ack is
        simply dropped.
        """
        client = self._client
        if client is not None and generation == self._generation and qos > 0:
            try:
                client.ack(mid, qos)
            except OSError:
                pass  # the connection is dropping; the broker re-sends after the reconnect

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (no last will) and stop the network thread."""
        self._stopping.set()  # the network thread sends DISCONNECT itself (see _session)
        wake(self._client)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- network thread -----------------------------------------------------------------------

    def _run(self) -> None:
        index = 0
        while not self._stopping.is_set():
            broker = self._brokers[index % len(self._brokers)]
            try:
                held = self._session(broker)
            except Exception as exc:  # noqa: BLE001 - this thread must outlive any surprise
                self._last_error = f"mqtt connection failed unexpectedly: {exc!r}"
                self._connected_event.clear()
                held = False
            if self._stopping.is_set():
                break
            if not held:
                # Failover: try the next URL after a failed attempt, and after a connection the
                # broker dropped before it held (a load balancer without a backend accepts and
                # drops us at once: staying on it would never reach a healthy broker).
                index += 1
            delay = self._backoff.next_delay()
            attempts = self._backoff.attempt
            if attempts in (10, 100) or attempts % 1000 == 0:
                self._log.info(
                    "still retrying the broker", error=self._last_error, attempts=attempts
                )
            self._stopping.wait(delay)
