"""What an MQTT connection reports to its handler and hands back: handler protocol, will, status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt


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
