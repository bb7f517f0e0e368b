"""Commands on the gateway's own cmd topic: validated, answered, correlated, never fatal."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.localbroker import LocalMosquitto
from agent.mqtt import CommandFailed, Contract, DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches, punches_in
from tests.support.mqtt import Collector
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]
Collectors = Callable[..., Collector]
CMD = f"{PREFIX}/{GATEWAY}/cmd"


class Backend:
    """A command sender: MQTT 5 with a response topic and correlation data, or 3.1.1."""

    def __init__(self, port: int, *, v5: bool = True) -> None:
        self.v5 = v5
        self.response_topic = f"backend/replies/{uuid.uuid4().hex[:8]}"
        self.replies: list[tuple[str, dict[str, Any], bytes | None]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.client.subscribe([(self.response_topic, 1), (f"{PREFIX}/+/reply/#", 1)])
        assert self._subscribed.wait(5)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None) if self.v5 else None
        with self._lock:
            self.replies.append((msg.topic, json.loads(msg.payload), correlation))

    def send(
        self,
        name: str,
        payload: bytes | dict[str, Any],
        *,
        correlation: bytes | None = None,
        gateway: str = GATEWAY,
        response_topic: str | None = None,
        retain: bool = False,
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic or self.response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        topic = f"{PREFIX}/{gateway}/cmd/{name}"
        info = self.client.publish(topic, body, qos=1, retain=retain, properties=props)
        info.wait_for_publish(5)

    def reply_to(self, request_id: str, timeout: float = 5.0) -> tuple[str, dict[str, Any], Any]:
        def find() -> tuple[str, dict[str, Any], Any] | None:
            with self._lock:
                return next((r for r in self.replies if r[1].get("request_id") == request_id), None)

        return wait_for(find, timeout=timeout, what=f"reply to {request_id}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def backend(broker: LocalMosquitto) -> Any:
    sender = Backend(broker.port)
    yield sender
    sender.close()


def _ready(worker: DeliveryWorker) -> None:
    """Connected and the cmd subscription granted: a command sent now reaches the worker."""
    wait_for(lambda: worker.connection.subscribed, timeout=5, what="cmd subscription")


def test_ping_is_answered_on_the_response_topic_with_correlation_data(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    backend: Backend,
    contract: Contract,
) -> None:
    outbox.add_punches(make_punches(3))
    worker = workers(fast_options(broker.url), outbox, boot=4)
    _ready(worker)
    backend.send("ping", {"request_id": "p1"}, correlation=b"\x01corr")
    topic, reply, correlation = backend.reply_to("p1")
    assert topic == backend.response_topic
    assert correlation == b"\x01corr"
    assert reply["ok"] is True and reply["command"] == "ping"
    assert reply["result"]["pong"] is True and reply["result"]["boot"] == 4
    assert "resend" in reply["result"]["commands"]
    assert not contract.errors("command-reply", reply)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b"\xff\xfe", "malformed"),
        (json.dumps({"request_id": "big", "pad": "x" * 20_000}).encode(), "too_large"),
        (json.dumps({"request_id": "bad-seq", "from_seq": 0}).encode(), "invalid"),
        (json.dumps({"request_id": "extra", "from_seq": 1, "drop": True}).encode(), "invalid"),
        # 5,000 nested arrays fit in 16 KB; Python's parser gives up with RecursionError.
        (b"[" * 5000 + b"]" * 5000, "malformed"),
        (b'{"request_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", "malformed"),
        # Valid JSON, but no UTF-8 text can carry a lone surrogate (nor can the reply echo it).
        (b'{"request_id": "\\ud800", "from_seq": 1}', "malformed"),
        # Seqs are SQLite integers: beyond 2**63 - 1 there is nothing to re-send.
        (b'{"request_id": "s1", "from_seq": 9223372036854775808}', "invalid"),
        (b'{"request_id": "s2", "from_seq": 1e308}', "invalid"),
    ],
)
def test_malformed_oversized_and_invalid_commands_get_error_replies(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    backend: Backend,
    contract: Contract,
    payload: bytes,
    code: str,
) -> None:
    worker = workers(fast_options(broker.url, max_command_bytes=16_384), outbox)
    _ready(worker)
    backend.send("resend", payload, correlation=b"c-" + code.encode())
    reply = wait_for(
        lambda: next((r for r in backend.replies if r[2] == b"c-" + code.encode()), None),
        timeout=5,
        what=f"{code} reply",
    )[1]
    assert reply["ok"] is False and reply["error"]["code"] == code
    assert not contract.errors("command-reply", reply)
    # The agent is still fine: it answers the next command and still delivers.
    backend.send("ping", {"request_id": "after"})
    assert backend.reply_to("after")[1]["ok"] is True
    outbox.add_punches(make_punches(2))
    worker.wake()
    assert worker.flush(5)


@pytest.mark.parametrize("name", ["format-disk", "PING", "", "ping\u200f"])
def test_unknown_command_gets_an_error_reply_listing_known_ones(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, backend: Backend, name: str
) -> None:
    """Also an empty name (``cmd/``: a sender's template with an empty variable)."""
    worker = workers(fast_options(broker.url), outbox)
    _ready(worker)
    backend.send(name, {"request_id": "u1"})
    reply = backend.reply_to("u1")[1]
    assert reply["error"]["code"] == "unknown_command"
    assert "ping" in reply["error"]["message"]


def test_commands_for_another_gateway_are_not_received(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, backend: Backend
) -> None:
    worker = workers(fast_options(broker.url), outbox)
    _ready(worker)
    backend.send("ping", {"request_id": "other"}, gateway="gw-2")
    backend.send("ping", {"request_id": "mine"})
    backend.reply_to("mine")  # answered in order: a reply to "other" would have come first
    assert all(r[1].get("request_id") != "other" for r in backend.replies)


def test_resend_command_republishes_delivered_punches_as_replayed(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    backend: Backend,
    collectors: Callable[..., Collector],
) -> None:
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(20))
    worker = workers(fast_options(broker.url), outbox)
    assert worker.flush(5)
    _ready(worker)
    backend.send("resend", {"request_id": "r1", "from_seq": 15})
    reply = backend.reply_to("r1")[1]
    assert reply["ok"] and reply["result"]["requeued"] == 6
    messages = collector.wait(lambda ms: len(punches_in(ms)) >= 26, what="re-sent punches")
    again = punches_in(messages)[20:]
    assert [p["seq"] for p in again] == list(range(15, 21))
    assert all(p["replayed"] for p in again)
    assert worker.flush(5)
    # From beyond the newest seq (up to SQLite's largest integer): nothing to re-send.
    backend.send("resend", {"request_id": "far", "from_seq": 2**63 - 1})
    assert backend.reply_to("far")[1]["result"] == {
        "from_seq": 2**63 - 1,
        "requeued": 0,
        "backlog": 0,
    }


def test_registered_time_sync_handler_is_dispatched_and_its_failure_is_reported(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    backend: Backend,
    contract: Contract,
) -> None:
    calls: list[dict[str, Any]] = []

    def time_sync(request: dict[str, Any]) -> dict[str, Any]:
        calls.append(request)
        if request.get("device_id") == "broken":
            raise CommandFailed("device broken unreachable: check its network cable")
        return {"devices": [{"device_id": request.get("device_id", "all"), "ok": True}]}

    worker = workers(fast_options(broker.url), outbox)
    worker.register_command("time-sync", "command-time-sync", time_sync)
    _ready(worker)
    backend.send("time-sync", {"request_id": "t1", "device_id": "lobby-1"})
    backend.send("time-sync", {"request_id": "t2", "device_id": "broken"})
    backend.send("time-sync", {"request_id": "t3", "device_id": "Not An Id!"})
    ok, failed, invalid = (backend.reply_to(r)[1] for r in ("t1", "t2", "t3"))
    assert ok["ok"] and ok["result"]["devices"][0]["device_id"] == "lobby-1"
    assert failed["error"] == {
        "code": "failed",
        "message": "device broken unreachable: check its network cable",
    }
    assert invalid["error"]["code"] == "invalid"
    assert [c["device_id"] for c in calls] == ["lobby-1", "broken"]
    for reply in (ok, failed, invalid):
        assert not contract.errors("command-reply", reply)


@pytest.mark.parametrize(
    "target",
    [
        f"{PREFIX}/{GATEWAY}/punches",
        f"{PREFIX}/{GATEWAY}/status",
        f"{PREFIX}/gw-2/punches",
        f"{PREFIX}/gw-2/status",
        f"{PREFIX}/gw-2/reply/ping",
        f"{PREFIX}/gw-2/cmd/resend",
    ],
)
def test_response_topic_under_the_prefix_outside_the_own_reply_tree_is_not_used(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    backend: Backend,
    collectors: Callable[..., Collector],
    target: str,
) -> None:
    """A command cannot make the gateway publish over its own topics or another gateway's."""
    collector = collectors([f"{PREFIX}/#"])
    worker = workers(fast_options(broker.url), outbox)
    _ready(worker)
    backend.send("ping", {"request_id": "hijack"}, response_topic=target)
    topic, reply, _ = backend.reply_to("hijack")
    assert topic == f"{PREFIX}/{GATEWAY}/reply/ping"
    assert reply["ok"]
    assert [m for m in collector.messages if m.topic == target and b"hijack" in m.payload] == []


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_command_is_not_run_again_when_the_agent_restarts(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    backend: Backend,
    collectors: Callable[..., Collector],
    protocol: str,
) -> None:
    """A resend published with the retain flag re-sends once, not at every later connect: on
    MQTT 5 the broker does not send it at subscribe time at all, on 3.1.1 it is refused."""
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(5))
    first = workers(fast_options(broker.url, protocol=protocol), outbox)
    assert first.flush(5)
    _ready(first)
    backend.send("resend", {"request_id": "stale", "from_seq": 1}, retain=True)
    assert backend.reply_to("stale")[1]["result"]["requeued"] == 5
    collector.wait(lambda ms: len(punches_in(ms)) >= 10, what="the one re-send")
    assert first.flush(5)
    first.stop(timeout=2)

    second = workers(fast_options(broker.url, protocol=protocol), outbox, boot=1)
    _ready(second)
    backend.send("ping", {"request_id": "after-restart"})
    backend.reply_to("after-restart")
    # Commands are answered in order: the retained one, had it run, was answered first.
    stale = [r for r in backend.replies if r[1].get("request_id") == "stale"]
    if protocol == "5":
        assert len(stale) == 1  # only the live delivery's reply
    else:
        assert len(stale) == 2
        assert stale[1][1]["ok"] is False and stale[1][1]["error"]["code"] == "invalid"
        assert "retain" in stale[1][1]["error"]["message"]
    assert outbox.stats().pending == 0
    assert second.flush(5)
    assert len(punches_in(collector.messages)) == 10
    assert json.loads(collector.messages[-1].payload)["punches"][-1]["seq"] == 5


def test_mqtt_311_commands_are_correlated_by_request_id(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers
) -> None:
    sender = Backend(broker.port, v5=False)
    try:
        worker = workers(fast_options(broker.url, protocol="3.1.1"), outbox)
        _ready(worker)
        sender.send("ping", {"request_id": "v3"})
        topic, reply, _ = sender.reply_to("v3")
        assert topic == f"{PREFIX}/{GATEWAY}/reply/ping"
        assert reply["ok"] and reply["request_id"] == "v3"
    finally:
        sender.close()


def test_command_names_and_schemas_are_checked_at_registration(
    broker: LocalMosquitto, outbox: Outbox
) -> None:
    worker = DeliveryWorker(fast_options(broker.url), outbox, GATEWAY)
    with pytest.raises(ValueError, match="must match"):
        worker.register_command("Bad/Name", "command-ping", lambda r: {})
    with pytest.raises(Exception, match="is not valid"):
        worker.register_command("x", {"type": "no-such-type"}, lambda r: {})


def test_a_retained_command_paho_cannot_parse_does_not_keep_the_gateway_offline(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, backend: Backend
) -> None:
    """paho refuses a U+FEFF in a string property (MQTT allows it) by dropping the connection.
    Retained, such a command came back at every connect and the gateway never stayed online;
    on MQTT 5 the agent subscribes without retained messages."""
    backend.send("ping", {"request_id": "bom"}, response_topic="backend/\ufeffreplies", retain=True)
    worker = workers(fast_options(broker.url), outbox)
    _ready(worker)
    backend.send("ping", {"request_id": "later"})
    assert backend.reply_to("later")[1]["ok"] is True
    assert worker.status().connects == 1
