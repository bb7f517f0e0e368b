"""The command queue holds no oversized payloads (a hung handler plus big commands: no OOM)."""

from __future__ import annotations

import json
import threading
import tracemalloc
from typing import Any

import paho.mqtt.client as mqtt

from agent.mqtt import Contract
from agent.mqtt.commands import CommandDispatcher
from agent.mqtt.contract import Topics
from tests.mqtt.conftest import GATEWAY, PREFIX
from tests.support.wait import wait_for


class Recorder:
    """Stands in for the connection: records the replies the dispatcher publishes."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, payload: bytes, **_kwargs: Any) -> object:
        with self._lock:
            self.replies.append(json.loads(payload))
        return object()

    def count(self) -> int:
        with self._lock:
            return len(self.replies)


def _message(name: str, payload: bytes) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=f"{PREFIX}/{GATEWAY}/cmd/{name}".encode())
    message.payload = payload
    return message


def test_oversized_commands_waiting_behind_a_busy_one_do_not_hold_their_payloads(
    contract: Contract,
) -> None:
    running, release = threading.Event(), threading.Event()

    def slow(_request: dict[str, Any]) -> dict[str, Any]:
        running.set()
        release.wait(10)  # a terminal that takes long to answer a time sync
        return {}

    recorder = Recorder()
    dispatcher = CommandDispatcher(Topics(PREFIX, GATEWAY), contract, recorder, queue_size=32)
    dispatcher.register("slow", {"type": "object"}, slow)
    dispatcher.start()
    try:
        dispatcher.submit(_message("slow", b"{}"))
        assert running.wait(5)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(20):
                dispatcher.submit(_message("ping", b" " * 1_000_000))
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        release.set()
        wait_for(lambda: recorder.count() == 21, timeout=5, what="21 replies")
    finally:
        release.set()
        dispatcher.stop(5)
    assert held < 1_000_000, f"the queue holds {held} bytes of payloads it will not read"
    assert [r["error"]["code"] for r in recorder.replies[1:]] == ["too_large"] * 20
    assert "1000000 bytes" in recorder.replies[1]["error"]["message"]
