"""Backend acks under a fleet's load: what the receiver publishes must fit the broker."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker, MqttOptions
from agent.receiver import Receiver, open_store
from buffer.outbox import Outbox
from tests.mqtt.conftest import fast_options, make_punches
from tests.receiver.conftest import rows
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]


class SmallPacketMosquitto(LocalMosquitto):
    """A broker that takes packets up to 100,000 bytes (AWS IoT: 128 KB) and says so."""

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a", encoding="utf-8") as config:
            config.write("max_packet_size 100000\n")


def test_an_ack_for_many_batches_is_split_to_fit_the_brokers_packet_limit(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    """One commit takes whatever arrived: 32 batches of one gateway make one ack of 3,200 ids,
    about 150 KB. A broker drops a client that sends a packet over its limit, the messages
    come again, the same ack is too large again: the gateway was never acknowledged."""
    broker = SmallPacketMosquitto(tmp_path / "mosquitto").start()
    options = MqttOptions(urls=(broker.url,), client_id="receiver-1", reconnect_min=0.02)
    db = str(tmp_path / "hr.db")
    first = Receiver(options, open_store(db), name="receiver-1").start()
    wait_for(lambda: first.connection.subscribed, timeout=5, what="receiver subscribed")
    first.stop(2)  # restarted later: meanwhile the broker queues what the gateway sends
    first.store.close()
    receiver = Receiver(options, open_store(db), name="receiver-1")
    try:
        outbox.add_punches(make_punches(3200))
        worker = workers(
            fast_options(broker.url, ack="backend", batch_size=100, inflight=32), outbox
        )
        wait_for(lambda: worker.status().in_flight == 3200, timeout=10, what="a full window")
        busy = sqlite3.connect(db, isolation_level=None)  # the backend's own long transaction
        busy.execute("BEGIN IMMEDIATE")
        try:
            receiver.start()
            wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver back")
            wait_for(lambda: receiver.connection.status().connects >= 1, timeout=5)
        finally:
            busy.rollback()
            busy.close()
        assert worker.flush(20), worker.status()
        assert rows(db, "SELECT count(DISTINCT id) FROM punches") == [(3200,)]
        assert receiver.connection.status().connects == 1
    finally:
        receiver.stop(2)
        receiver.store.close()
        broker.stop()
