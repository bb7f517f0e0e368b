"""A site's broker as IT installs it: Mosquitto with its stock limits.

Stock Mosquitto 2.0 announces Receive Maximum 20 in its MQTT 5 CONNACK. The harness's broker
(``LocalMosquitto``) used to lift that limit (``max_inflight_messages 0``) and so announced none,
which hid that paho 2.x refuses to change its in-flight limit on an open connection: every
connection to a stock Mosquitto was dropped right after CONNACK, and nothing was delivered.
It now keeps the stock in-flight limit; this test also takes the stock queue limit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches, punches_in
from tests.support.mqtt import Collector

Workers = Callable[..., DeliveryWorker]


class _StockMosquitto(LocalMosquitto):
    """Mosquitto with its default in-flight and queue limits (Receive Maximum 20)."""

    def _write_config(self) -> None:
        super()._write_config()
        lines = self.config_path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if not line.startswith(("max_inflight", "max_queued"))]
        self.config_path.write_text("\n".join(kept) + "\n", encoding="utf-8")


def test_a_window_wider_than_the_brokers_receive_maximum_is_delivered_on_one_connection(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    broker = _StockMosquitto(tmp_path / "stock-broker").start()
    try:
        collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/punches"]).start()
        try:
            outbox.add_punches(make_punches(600))
            options = fast_options(broker.url, protocol="5", inflight=40, batch_size=5)
            worker = workers(options, outbox)
            assert worker.flush(15), worker.status()
            messages = collector.wait(
                lambda ms: len({p["seq"] for p in punches_in(ms)}) >= 600, what="600 punches"
            )
            assert {p["seq"] for p in punches_in(messages)} == set(range(1, 601))
            status = worker.status()
            assert status.connects == 1, status.last_error
            assert status.last_error is None, status.last_error
        finally:
            collector.stop()
    finally:
        broker.stop()
