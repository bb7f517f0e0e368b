"""Delivery against odd brokers and backends: refusals, limits, stale and odd acks."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from drivers.base import Suspect
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches, punches_in
from tests.mqtt.test_delivery import _SmallPacketMosquitto
from tests.support.mqtt import Collector
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]
Collectors = Callable[..., Collector]


def _publish(port: int, topic: str, payload: dict, *, retain: bool = False) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        client.publish(topic, json.dumps(payload), qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_retained_backend_ack_is_not_an_acknowledgement_on_mqtt_311(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    # A backend that publishes its acks retained (or an old one left on the broker): the broker
    # hands it to the gateway at every connect. On MQTT 5 the gateway never gets it (Retain
    # Handling 2); on 3.1.1 it would mark punches delivered that the backend never confirmed,
    # for instance ones a 'resend' put back, or ones re-sent after the backend lost them.
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(5))
    ids = [row.id for row in outbox.next_batch(5)]
    _publish(broker.port, f"{PREFIX}/{GATEWAY}/ack", {"ids": ids}, retain=True)
    worker = workers(fast_options(broker.url, ack="backend", protocol="3.1.1"), outbox)
    collector.wait(lambda ms: len(punches_in(ms)) >= 5, what="5 punches published")
    _publish(broker.port, f"{PREFIX}/{GATEWAY}/ack", {"ids": ids[:1]})
    wait_for(lambda: worker.status().delivered >= 1, timeout=5, what="the live ack recorded")
    assert outbox.stats().pending == 4, "only the live ack counts"


def test_a_punch_larger_than_the_brokers_packet_limit_waits_alone_and_the_rest_arrive(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    # A serial line of garbage kept as raw bytes: one punch bigger than the broker accepts.
    # Sent, it would cost the connection every time and hold back every punch behind it.
    punches = make_punches(5)
    punches[1] = replace(punches[1], suspect=frozenset({Suspect.TIME_INVALID}), raw=b"x" * 5000)
    outbox.add_punches(punches)
    broker = _SmallPacketMosquitto(tmp_path / "small-broker").start()
    try:
        collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/punches"]).start()
        try:
            worker = workers(fast_options(broker.url), outbox)
            collector.wait(
                lambda ms: {p["seq"] for p in punches_in(ms)} >= {1, 3, 4, 5},
                what="the punches around the oversized one",
            )
            wait_for(lambda: outbox.stats().pending == 1, timeout=5, what="4 delivered")
            (row,) = outbox.next_batch(5)
            assert row.seq == 2
            assert "packet" in (row.last_error or ""), row.last_error
            assert worker.status().connects == 1, "the oversized punch cost a reconnect"
        finally:
            collector.stop()
    finally:
        broker.stop()
