"""The receiver against a broker with its stock in-flight window (fixed in
agent/mqtt/connection.py by fbe902d; this pins it for the receiver's manual-ack session)."""

from __future__ import annotations

from pathlib import Path

from agent.mqtt import MqttOptions
from agent.mqtt.contract import encode_batch
from agent.receiver import Receiver, open_store
from tests.receiver.conftest import publish
from tests.receiver.test_fleet_database import DefaultWindowMosquitto
from tests.support.wait import wait_for


def test_the_receiver_connects_over_mqtt_5_to_a_broker_that_announces_a_receive_maximum(
    tmp_path: Path,
) -> None:
    """A stock Mosquitto (max_inflight_messages 20), HiveMQ (10) and EMQX (32) announce a
    Receive Maximum in their MQTT 5 CONNACK; setting paho's window after the connection is up
    raised RuntimeError, and every connection attempt failed, forever."""
    broker = DefaultWindowMosquitto(tmp_path / "mosquitto").start()
    options = MqttOptions(urls=(broker.url,), client_id="receiver-5", reconnect_min=0.02)
    receiver = Receiver(options, open_store(str(tmp_path / "hr.db")), name="receiver-5").start()
    try:
        wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
        punches = [{"id": "gw-1-1", "gateway_id": "gw-1", "seq": 1}]
        publish(broker.port, [("punchgate/v1/gw-1/punches", encode_batch("gw-1", punches))])
        wait_for(lambda: receiver.store.count() == 1, timeout=5, what="the punch stored")
    finally:
        receiver.stop(2)
        receiver.store.close()
        broker.stop()
