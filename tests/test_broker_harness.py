"""The test harness itself: a real broker that keeps queued messages across restarts."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.localbroker import LocalMosquitto
from tests.support.mqtt import Collector


def _publish(url_port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", url_port, keepalive=10)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_collector_receives_what_is_published(broker: LocalMosquitto) -> None:
    collector = Collector(broker.url, ["t/#"]).start()
    try:
        _publish(broker.port, "t/a", b"hello")
        messages = collector.wait(lambda ms: len(ms) == 1, what="one message")
        assert messages[0].topic == "t/a" and messages[0].payload == b"hello"
    finally:
        collector.stop()


def test_queued_messages_survive_a_broker_restart(broker: LocalMosquitto) -> None:
    """A persistent session keeps QoS 1 messages published while the subscriber was away."""
    collector = Collector(broker.url, ["q/#"], client_id="harness-persistent").start()
    collector.stop()  # session stays on the broker
    _publish(broker.port, "q/1", b"one")
    broker.restart()  # clean stop saves the queue; same port
    collector = Collector(broker.url, ["q/#"], client_id="harness-persistent").start()
    try:
        messages = collector.wait(lambda ms: any(m.topic == "q/1" for m in ms), what="queued q/1")
        assert [m.payload for m in messages if m.topic == "q/1"] == [b"one"]
    finally:
        collector.stop()


def test_stopped_broker_refuses_then_restart_accepts(broker: LocalMosquitto) -> None:
    broker.stop()
    assert not broker.running
    broker.start()
    collector = Collector(broker.url, ["x"]).start()
    collector.stop()
    assert broker.running
