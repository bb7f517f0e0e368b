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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.mqtt.diagnose import (
    RenewableSslContext,
    describe_connack,
    describe_connect_error,
)
from agent.mqtt.diagnose import build_ssl_context as build_ssl_context  # the doctor's import
from agent.mqtt.options import BrokerAddress, MqttOptions
from agent.mqtt.resolving import ResolvingClient
from config.errors import BrokerError
from drivers.backoff import Backoff
from drivers.netaddr import LookupTimeout, Resolver

log = structlog.get_logger("mqtt")

# Seconds per select() while nothing happens. publish() and close() wake it at once (paho's
# wake-up socket pair), so this only bounds keepalive checks; 20 wake-ups a second were a
# third of an idle gateway's CPU.
_LOOP_TIMEOUT = 0.25
STABLE_AFTER = 10.0  # seconds a connection must last before the reconnect backoff starts over


class ConnectionHandler(Protocol):
    """What the connection reports; every method runs on the network thread and must not block."""

    def on_connected(self, generation: int, broker_url: str) -> None:
        """A CONNACK with success arrived; subscriptions have been requested."""

    def on_disconnected(self, generation: int, reason: str) -> None:
        """The connection of ``generation`` is gone (clean or not)."""

    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> None:
        """The broker answered a QoS 1 publish; ``ok`` is False for MQTT 5 reason codes >= 0x80."""

    def on_message(self, generation: int, message: mqtt.MQTTMessage) -> None:
        """A message arrived on one of our subscriptions."""


@dataclass(frozen=True)
class Will:
    """The last will registered with every connection."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class ConnectionStatus:
    """A snapshot for ``punchgate status``."""

    connected: bool
    broker_url: str | None
    last_error: str | None
    connects: int
    generation: int
    reconnect_attempts: int  # see MqttConnection.reconnect_attempts


@dataclass(frozen=True)
class Published:
    """A publish the broker will answer; ``mid`` is only meaningful within ``generation``."""

    generation: int
    mid: int


def _network_thread_writes(_client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
    """paho's external-event-loop hook: nothing to do, ``loop()`` already selects for writing."""


def _release(client: mqtt.Client) -> None:
    """Close the socket and paho's wake-up socket pair now rather than whenever GC runs.

    A fresh client per connection attempt would otherwise hold two descriptors each until
    collected; paho has no public call for this (its ``__del__`` calls the same method).
    """
    client._reset_sockets()


def _wake(client: mqtt.Client | None) -> None:
    """Break the network thread out of ``select()`` now, as paho's own ``publish()`` does."""
    pair = getattr(client, "_sockpairW", None)
    if pair is not None:
        try:
            pair.send(b"\0")
        except OSError:
            pass  # closed meanwhile: the thread is past select() already


class MqttConnection:
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
        _wake(self._client)
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

    def _new_client(self, generation: int, broker: BrokerAddress) -> mqtt.Client:
        opts = self.options
        v5 = opts.protocol == "5"
        client = ResolvingClient(
            CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else self.session_expiry == 0,
            reconnect_on_failure=False,
            manual_ack=self.manual_ack,
            resolver=self._resolver,
        )
        client.connect_timeout = opts.connect_timeout
        # Our window is smaller; paho's limit must never be what holds a message back silently.
        client.max_inflight_messages_set(opts.inflight + 32)
        if opts.username is not None:
            client.username_pw_set(opts.username, opts.password)
        if self.will is not None:
            retain = self.will.retain and broker.url not in self._unretained
            client.will_set(self.will.topic, self.will.payload, self.will.qos, retain)
        state: dict[str, Any] = {"connack": None}

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, props: Any) -> None:
            state["receive_maximum"] = getattr(props, "ReceiveMaximum", None)
            state["maximum_packet_size"] = getattr(props, "MaximumPacketSize", None)
            state["retain_available"] = getattr(props, "RetainAvailable", 1)
            state["connack"] = reason

        def on_disconnect(_c: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
            from_broker = getattr(flags, "is_disconnect_packet_from_server", True)
            if from_broker or getattr(reason, "value", None) != _UNSPECIFIED:
                state["disconnect"] = reason
            else:  # paho's "Unspecified error" for a socket that just closed: say that
                state["disconnect"] = (
                    "the connection closed without a word from the broker (broker stopped or "
                    "restarted, or the network dropped it)"
                )

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
            failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
            if failed:
                self._fail(f"broker refused a subscription: {', '.join(failed)}")
            else:
                self._subscribed_generation = generation

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
            ok = not getattr(reason, "is_failure", False)
            self._guard(self.handler.on_published, generation, mid, ok, str(reason))

        def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            self._guard(self.handler.on_message, generation, message)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        # The network thread is the socket's only writer. Without an external event loop
        # registered, paho's publish() writes from the caller's thread while this thread may be
        # writing too: after a partial write (a slow uplink) the two interleaved packets' bytes
        # and the broker dropped the corrupt stream. With this hook set, publish() only queues
        # the packet and wakes the network thread, whose loop() writes it (in order).
        client.on_socket_register_write = _network_thread_writes
        client.user_data_set(state)
        return client

    def _guard(self, func: Any, *args: Any) -> None:
        # paho would let an exception escape loop() and kill this thread; log it instead.
        try:
            func(*args)
        except Exception:  # noqa: BLE001 - a handler bug must not take the connection down
            self._log.exception("mqtt handler failed", handler=getattr(func, "__name__", "?"))

    def _session(self, broker: BrokerAddress) -> bool:
        """Connect to ``broker`` and run until the connection ends; True if it held long enough."""
        generation = self._generation + 1
        self._attempting = broker.url
        client = self._new_client(generation, broker)
        state: dict[str, Any] = client.user_data_get()
        if broker.tls:
            assert self._ssl_context is not None
            context, change = self._ssl_context.current()
            if change is not None:
                self._log.warning("tls files changed", outcome=change)
            client.tls_set_context(context)
            if self.options.tls_insecure:
                client.tls_insecure_set(True)
        extra: dict[str, Any] = {}
        if self.options.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
            extra = {"clean_start": self.session_expiry == 0, "properties": props}
        try:
            client.connect(
                broker.host, broker.port, keepalive=max(5, int(self.options.keepalive)), **extra
            )
        except LookupTimeout as exc:
            self._fail(f"{broker.url}: {exc.strerror}")
            _release(client)
            return False
        except (OSError, ValueError) as exc:
            self._fail(describe_connect_error(broker, exc, self.options.connect_timeout))
            _release(client)
            return False
        deadline = time.monotonic() + self.options.connect_timeout
        closed = False
        while state["connack"] is None and time.monotonic() < deadline:
            if self._stopping.is_set():
                break
            if self._loop_once(client) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                closed = True
                break
        reason = state["connack"]
        if reason is None or getattr(reason, "is_failure", True):
            if reason is not None:
                self._fail(describe_connack(broker, reason))
                if getattr(reason, "value", None) == _RETAIN_NOT_SUPPORTED:
                    # Punches need no retain: connect again with an unretained will.
                    self._unretained.add(broker.url)
            elif closed:
                hint = (
                    "the broker may require a client certificate (mqtt.cert_file/key_file) "
                    "or refused the TLS session"
                    if broker.tls
                    else "is it an MQTT broker, and not a TLS-only port (then use mqtts://)?"
                )
                # MQTT 3.1.1 has no reason codes: Mosquitto just closes on a will it refuses
                # (and over MQTT 5 the close can overtake the CONNACK that gave the reason).
                hint += (
                    "; or the broker refuses our last will (QoS 1, retained): Mosquitto's log "
                    "then says 'QoS too high or retain not supported', so set max_qos 1 and "
                    "retain_available true on the broker"
                )
                self._fail(f"{broker.url} closed the connection before its CONNACK: {hint}")
            elif not self._stopping.is_set():
                self._fail(
                    f"no CONNACK from {broker.url} within {self.options.connect_timeout:.0f}s: "
                    "is it an MQTT broker, and does it speak TLS only if the URL is mqtts://?"
                )
            _release(client)
            return False
        return self._established(client, broker, generation, state)

    def _established(
        self, client: mqtt.Client, broker: BrokerAddress, generation: int, state: dict[str, Any]
    ) -> bool:
        receive_maximum = state.get("receive_maximum")
        if isinstance(receive_maximum, int) and receive_maximum > 0:
            # paho does not apply the broker's MQTT 5 Receive Maximum itself; exceeding it makes
            # brokers such as HiveMQ (10) disconnect us. paho queues what does not fit.
            _limit_inflight(client, min(self.options.inflight + 32, receive_maximum))
        self._retain_ok = state.get("retain_available") != 0
        if self._retain_ok:
            self._unretained.discard(broker.url)  # retain_available turned on: will retained
        elif broker.url not in self._unretained:
            self._unretained.add(broker.url)
            self._log.warning(
                "broker does not keep retained messages; gateway status is published unretained",
                url=broker.url,
                hint="set retain_available true on the broker so that the backend sees the "
                "gateway and terminal status when it subscribes",
            )
        packet_limit = state.get("maximum_packet_size")
        self._max_packet = packet_limit if isinstance(packet_limit, int) and packet_limit else None
        if self.subscriptions:
            client.subscribe(self._subscribe_list())
        self._generation = generation
        self._client = client
        self._broker_url = broker.url
        self._connects += 1
        self._said.clear()  # the next failure is news again
        self._connected_event.set()
        self._log.info("connected to broker", url=broker.url, generation=generation)
        started = time.monotonic()
        held = False
        self._guard(self.handler.on_connected, generation, broker.url)
        while not self._stopping.is_set():
            if self._loop_once(client) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if not held:
                held = self._held(started)
        # After close(): DISCONNECT (so no last will) and let it out before we drop the socket.
        # Sent from here, the socket's only writer: called from close()'s thread it raced this
        # thread releasing the socket (paho raised EBADF in the caller).
        if self._stopping.is_set():
            client.disconnect()
            deadline = time.monotonic() + 1.0
            while client.want_write() and time.monotonic() < deadline:
                if self._loop_once(client) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._connected_event.clear()
        reason = state.get("disconnect")
        text = "closed by us" if self._stopping.is_set() else f"connection lost ({reason})"
        if not self._stopping.is_set():
            self._last_error = f"connection to {broker.url} lost: {reason or 'socket closed'}"
            self._log.warning(
                "broker connection lost",
                url=broker.url,
                reason=str(reason),
                after_s=round(time.monotonic() - started, 1),
                action="reconnecting with backoff; if it lasts, check that the broker is "
                "running and reachable from the gateway",
            )
        _release(client)
        held = held or self._held(started)
        self._guard(self.handler.on_disconnected, generation, text)
        return held

    def _held(self, started: float) -> bool:
        """Start the backoff over once the connection made at ``started`` has lasted long enough.

        Only a connection that held resets it: one the broker drops right after CONNACK (ACL,
        packet size, session take-over) must not be retried in a tight loop. Resetting while the
        connection is still up lets ``status`` show 0 attempts for a healthy connection.
        """
        if time.monotonic() - started < self.stable_after:
            return False
        self._backoff.reset()
        return True

    def _subscribe_list(self) -> list[tuple[str, Any]]:
        """Our subscriptions; on MQTT 5 without the retained messages sent at subscribe time.

        Acks and commands are events, not state: a retained one would be replayed at every
        connect, and one paho cannot parse (a U+FEFF in a property: paho refuses what MQTT
        allows) would end every connection before our code sees it, so the gateway would never
        stay online. On MQTT 3.1.1 retained commands still arrive and are refused (commands.py).
        """
        if self.options.protocol != "5":
            return list(self.subscriptions)
        never = SubscribeOptions.RETAIN_DO_NOT_SEND
        return [
            (topic, SubscribeOptions(qos=qos, retainHandling=never))
            for topic, qos in self.subscriptions
        ]

    def _loop_once(self, client: mqtt.Client) -> MQTTErrorCode:
        try:
            return client.loop(_LOOP_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any paho surprise ends this connection only
            self._last_error = f"mqtt network loop failed: {exc!r}"
            return MQTTErrorCode.MQTT_ERR_UNKNOWN

    def _fail(self, message: str) -> None:
        # Logged once per broker until a connection succeeds: with failover between two brokers
        # that are both down, comparing with the last error alone warned at every retry.
        if self._said.get(self._attempting) != message:
            self._log.warning("broker connect failed", error=message)
            self._said[self._attempting] = message
        self._last_error = message


_UNSPECIFIED = 0x80  # paho's reason for a connection lost without a DISCONNECT packet
_RETAIN_NOT_SUPPORTED = 0x9A  # MQTT 5 CONNACK reason: the broker refused our retained will


def _limit_inflight(client: mqtt.Client, limit: int) -> None:
    """Lower paho's in-flight limit on a connection that is open (at CONNACK, nothing sent yet).

    paho 2.x refuses ``max_inflight_messages_set`` once connected (RuntimeError), and every
    broker that announces a Receive Maximum (stock Mosquitto: 20) then cost the connection
    at once, forever. paho's doubt is about switching between 0 (no limit) and a limit; here
    both the old and the new value are positive, and the client is fresh for this connection.
    """
    if limit > 0 and client._max_inflight_messages > 0:
        client._max_inflight_messages = limit
