"""One fresh paho client per connection attempt: options, last will, callbacks, sockets.

The callbacks only record what paho reports (in the client's user data, read by the session) or
hand it to the handler; they run on the network thread and must not block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from agent.mqtt.connection_types import ConnectionHandler, Will
from agent.mqtt.options import BrokerAddress, MqttOptions
from agent.mqtt.resolving import ResolvingClient
from drivers.netaddr import Resolver

UNSPECIFIED = 0x80  # paho's reason for a connection lost without a DISCONNECT packet
RETAIN_NOT_SUPPORTED = 0x9A  # MQTT 5 CONNACK reason: the broker refused our retained will


def network_thread_writes(_client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
    """paho's external-event-loop hook: nothing to do, ``loop()`` already selects for writing."""


def release(client: mqtt.Client) -> None:
    """Close the socket and paho's wake-up socket pair now rather than whenever GC runs.

    A fresh client per connection attempt would otherwise hold two descriptors each until
    collected; paho has no public call for this (its ``__del__`` calls the same method).
    """
    client._reset_sockets()


def wake(client: mqtt.Client | None) -> None:
    """Break the network thread out of ``select()`` now, as paho's own ``publish()`` does."""
    pair = getattr(client, "_sockpairW", None)
    if pair is not None:
        try:
            pair.send(b"\0")
        except OSError:
            pass  # closed meanwhile: the thread is past select() already


def limit_inflight(client: mqtt.Client, limit: int) -> None:
    """Lower paho's in-flight limit on a connection that is open (at CONNACK, nothing sent yet).

    paho 2.x refuses ``max_inflight_messages_set`` once connected (RuntimeError), and every
    broker that announces a Receive Maximum (stock Mosquitto: 20) then cost the connection
    at once, forever. paho's doubt is about switching between 0 (no limit) and a limit; here
    both the old and the new value are positive, and the client is fresh for this connection.
    """
    if limit > 0 and client._max_inflight_messages > 0:
        client._max_inflight_messages = limit


class ClientMethods:
    """Mixed into ``MqttConnection``, which provides the attributes declared here."""

    options: MqttOptions
    handler: ConnectionHandler
    will: Will | None
    session_expiry: int
    manual_ack: bool
    _resolver: Resolver
    _unretained: set[str]
    _subscribed_generation: int
    _log: structlog.typing.FilteringBoundLogger

    if TYPE_CHECKING:

        def _fail(self, message: str) -> None: ...  # SessionMethods

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
            if from_broker or getattr(reason, "value", None) != UNSPECIFIED:
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
        client.on_socket_register_write = network_thread_writes
        client.user_data_set(state)
        return client

    def _guard(self, func: Any, *args: Any) -> None:
        # paho would let an exception escape loop() and kill this thread; log it instead.
        try:
            func(*args)
        except Exception:  # noqa: BLE001 - a handler bug must not take the connection down
            self._log.exception("mqtt handler failed", handler=getattr(func, "__name__", "?"))
