"""The broker checks' last step: an MQTT CONNECT with the daemon's options, and the limits
the broker announces in its CONNACK."""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.doctor.broker_step import FAMILY, limit_note, os_reason
from agent.doctor.result import CheckResult, fail, ok, warn
from agent.mqtt.connection import build_ssl_context, describe_connack
from agent.mqtt.diagnose import QOS0_HINT
from agent.mqtt.options import BrokerAddress, MqttOptions
from agent.mqtt.resolving import ResolvingClient


def check_login(
    broker: BrokerAddress, options: MqttOptions, timeout: float, state: dict[str, Any]
) -> CheckResult:
    """An MQTT CONNECT as the daemon would make it, and the limits the CONNACK announces."""
    name = "MQTT login"
    who = f"as {options.username!r}" if options.username else "anonymously"
    v5 = options.protocol == "5"
    client = ResolvingClient(
        CallbackAPIVersion.VERSION2,
        client_id=options.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
        reconnect_on_failure=False,
        resolver=state["resolver"],
    )
    client.connect_timeout = timeout
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    if broker.tls:
        client.tls_set_context(build_ssl_context(options))
        if options.tls_insecure:
            client.tls_insecure_set(True)
    connack: list[Any] = []
    announced: list[Any] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, properties: Any) -> None:
        announced.append(properties)
        connack.append(reason)

    client.on_connect = on_connect
    extra: dict[str, Any] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        extra = {"clean_start": True, "properties": props}
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(timeout) + 5), **extra)
    except (OSError, ValueError) as exc:
        client._reset_sockets()
        reason = os_reason(exc, timeout) if isinstance(exc, OSError) else str(exc)
        return fail(
            FAMILY, broker.url, name, f"cannot connect {who}: {reason}", "see the steps above"
        )
    try:
        deadline = time.monotonic() + timeout
        lost = False
        while not connack and time.monotonic() < deadline:
            if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                lost = not connack
                break
        if not connack:
            step = "the port does not answer like an MQTT broker: check the URL scheme and port"
            if not lost:
                detail = f"no CONNACK within {timeout:g}s{limit_note(options, timeout)} {who}"
            else:
                detail = f"the broker closed the connection without a CONNACK {who}"
                step += "" if broker.tls else " (a TLS port, usually 8883, needs mqtts://)"
            return fail(FAMILY, broker.url, name, detail, step)
        reason = connack[0]
        if getattr(reason, "is_failure", False):
            text = describe_connack(broker, reason)
            step = (
                text.split("; ", 1)[1]
                if "; " in text
                else "read the broker log for this client; check its access rules (ACL)"
            )
            return fail(FAMILY, broker.url, name, f"CONNACK {who}: {reason}", step)
        client.disconnect()
        end = time.monotonic() + min(1.0, timeout)
        while client.want_write() and time.monotonic() < end:
            client.loop(0.05)
        detail = f"CONNACK {who}: {reason}, MQTT {options.protocol}"
        # The doctor registers no will; the daemon's (QoS 1, retained) meets these limits.
        if getattr(announced[0], "MaximumQoS", 1) == 0:
            return fail(
                FAMILY,
                broker.url,
                name,
                detail + ", but the broker allows only QoS 0: punches cannot be delivered",
                f"the broker limits QoS (Mosquitto: {QOS0_HINT}",
            )
        if getattr(announced[0], "RetainAvailable", 1) == 0:
            return warn(
                FAMILY,
                broker.url,
                name,
                detail + ", but the broker keeps no retained messages: the gateway status is "
                "published unretained, so the backend only sees it when it changes",
                "set retain_available true on the broker",
            )
        if not v5 and options.ack == "broker":
            return warn(
                FAMILY,
                broker.url,
                name,
                detail + ", with broker acks: over MQTT 3.1.1 a broker acknowledges a message "
                "its ACL refuses or that exceeds its size limit, and drops it; those punches are "
                "counted as delivered and never reach HR",
                'set mqtt.protocol = "5" (refusals are then seen and re-sent) or mqtt.ack = '
                '"backend"',
            )
        return ok(FAMILY, broker.url, name, detail)
    finally:
        client._reset_sockets()
