"""The dispatcher alone, replies recorded: one contract reply per command, on a safe topic, and
no oversized payload held while a handler is busy."""

from __future__ import annotations

import json
import threading
import tracemalloc
from typing import Any

import paho.mqtt.client as mqtt
from hypothesis import example, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.mqtt import Contract
from agent.mqtt.commands import CommandDispatcher
from agent.mqtt.contract import Topics
from tests.mqtt.conftest import GATEWAY, PREFIX
from tests.support.wait import wait_for

CONTRACT = Contract.load()
TOPICS = Topics(PREFIX, GATEWAY)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "request_id": json_values | st.text(min_size=1, max_size=130),
            "from_seq": json_values,
            "device_id": json_values,
        },
    )
    | json_values
)


class Recorder:
    """Stands in for the connection: records what the dispatcher publishes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Properties | None]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, payload: bytes, **kwargs: Any) -> object:
        with self._lock:
            self.sent.append((topic, payload, kwargs.get("properties")))
        return object()

    def count(self) -> int:
        with self._lock:
            return len(self.sent)


def _dispatcher(recorder: Recorder) -> CommandDispatcher:
    dispatcher = CommandDispatcher(TOPICS, CONTRACT, recorder, max_bytes=4096)
    dispatcher.register("ping", "command-ping", lambda r: {"pong": True})
    dispatcher.register("resend", "command-resend", lambda r: {"from_seq": r["from_seq"]})
    dispatcher.register("time-sync", "command-time-sync", lambda r: {"devices": {}})
    return dispatcher


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["ping", "resend", "time-sync", "nope", ""]),
    payload=st.one_of(
        bodies.map(lambda b: json.dumps(b).encode()),
        st.binary(max_size=64),
        st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    response_topic=st.none()
    | st.text(min_size=1, max_size=40)
    | st.sampled_from([f"{PREFIX}/gw-2/punches", f"{PREFIX}/{GATEWAY}/status", "$SYS/x"]),
    correlation=st.none() | st.binary(max_size=16),
    retained=st.booleans(),
)
@example(
    name="ping",
    payload=b'{"request_id": "\\udfff"}',
    response_topic=None,
    correlation=None,
    retained=False,
)
@example(
    name="resend",
    payload=b"[" * 3000 + b"]" * 3000,
    response_topic=f"{PREFIX}/gw-2/punches",
    correlation=b"c",
    retained=False,
)
def test_every_command_gets_exactly_one_contract_reply_on_a_safe_topic(
    name: str,
    payload: bytes,
    response_topic: str | None,
    correlation: bytes | None,
    retained: bool,
) -> None:
    recorder = Recorder()
    dispatcher = _dispatcher(recorder)
    dispatcher.start()
    try:
        message = mqtt.MQTTMessage(topic=TOPICS.command(name).encode())
        message.payload = payload
        message.retain = retained
        props = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        message.properties = props
        dispatcher.submit(message)
        wait_for(recorder.count, timeout=5, what="a reply")
    finally:
        dispatcher.stop(5)
    assert recorder.count() == 1
    topic, body, properties = recorder.sent[0]
    reply = json.loads(body.decode("utf-8"))
    assert not CONTRACT.errors("command-reply", reply), reply
    assert topic == response_topic or topic.startswith(f"{TOPICS.base}/reply/")
    if topic.startswith(f"{PREFIX}/"):
        assert topic.startswith(f"{TOPICS.base}/reply/")
    if correlation is not None:
        assert properties is not None and properties.CorrelationData == correlation
    if retained:
        assert reply["ok"] is False


def _message(name: str, payload: bytes) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=TOPICS.command(name).encode())
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
    dispatcher = CommandDispatcher(TOPICS, contract, recorder, queue_size=32)
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
    errors = [json.loads(body)["error"] for _topic, body, _props in recorder.sent[1:]]
    assert [e["code"] for e in errors] == ["too_large"] * 20
    assert "1000000 bytes" in errors[0]["message"]
