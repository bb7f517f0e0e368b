"""A subscriber that keeps collecting across broker restarts (persistent session, QoS 1)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.wait import wait_for


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """Subscribes to ``topics`` with a persistent session and records every message."""

    def __init__(self, url: str, topics: list[str], *, client_id: str | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.topics = topics
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self._subscribed.set()
        # paho annotates int seconds but sleeps on floats; sub-second delays keep restarts quick.
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # type: ignore[arg-type]

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _client: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def start(self, timeout: float = 10.0) -> Collector:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # keep the session (and queued QoS 1) across restarts
        self.client.connect(self.host, self.port, keepalive=10, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise AssertionError(
                f"collector could not subscribe to {self.topics} within {timeout}s"
            )
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic_suffix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def wait(self, predicate: Any, timeout: float = 10.0, what: str = "") -> list[Message]:
        def check() -> list[Message] | None:
            with self._lock:
                snapshot = list(self.messages)
            return snapshot if predicate(snapshot) else None

        return wait_for(check, timeout=timeout, what=what or "messages")
