"""The network thread's life of one connection: connect, wait for CONNACK, loop until it ends.

A connection that lasts ``stable_after`` seconds starts the reconnect backoff over; one the broker
drops sooner keeps it growing. Connect failures are logged once per broker until one succeeds.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.mqtt.connection_types import ConnectionHandler
from agent.mqtt.diagnose import RenewableSslContext, describe_connack, describe_connect_error
from agent.mqtt.options import BrokerAddress, MqttOptions
from agent.mqtt.paho_client import RETAIN_NOT_SUPPORTED, limit_inflight, release
from drivers.backoff import Backoff
from drivers.netaddr import LookupTimeout

# Seconds per select() while nothing happens. publish() and close() wake it at once (paho's
# wake-up socket pair), so this only bounds keepalive checks; 20 wake-ups a second were a
# third of an idle gateway's CPU.
LOOP_TIMEOUT = 0.25


class SessionMethods:
    """Mixed into ``MqttConnection``, which provides the attributes declared here."""

    options: MqttOptions
    handler: ConnectionHandler
    subscriptions: list[tuple[str, int]]
    session_expiry: int
    stable_after: float
    _backoff: Backoff
    _ssl_context: RenewableSslContext | None
    _stopping: threading.Event
    _connected_event: threading.Event
    _client: mqtt.Client | None
    _generation: int
    _broker_url: str | None
    _last_error: str | None
    _connects: int
    _max_packet: int | None
    _unretained: set[str]
    _retain_ok: bool
    _attempting: str
    _said: dict[str, str]
    _log: structlog.typing.FilteringBoundLogger

    if TYPE_CHECKING:

        def _new_client(self, generation: int, broker: BrokerAddress) -> mqtt.Client: ...

        def _guard(self, func: Any, *args: Any) -> None: ...  # ClientMethods

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
            release(client)
            return False
        except (OSError, ValueError) as exc:
            self._fail(describe_connect_error(broker, exc, self.options.connect_timeout))
            release(client)
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
                if getattr(reason, "value", None) == RETAIN_NOT_SUPPORTED:
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
            release(client)
            return False
        return self._established(client, broker, generation, state)

    def _established(
        self, client: mqtt.Client, broker: BrokerAddress, generation: int, state: dict[str, Any]
    ) -> bool:
        receive_maximum = state.get("receive_maximum")
        if isinstance(receive_maximum, int) and receive_maximum > 0:
            # paho does not apply the broker's MQTT 5 Receive Maximum itself; exceeding it makes
            # brokers such as HiveMQ (10) disconnect us. paho queues what does not fit.
            limit_inflight(client, min(self.options.inflight + 32, receive_maximum))
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
        release(client)
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
            return client.loop(LOOP_TIMEOUT)
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
