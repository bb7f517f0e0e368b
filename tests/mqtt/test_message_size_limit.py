"""A broker whose message size limit is below a batch (Mosquitto's ``message_size_limit``).

Mosquitto 2.0 does not announce that limit. Over MQTT 5 it answers a larger PUBLISH with
PUBACK reason 0x95, which is not a PUBACK reason code, so paho drops the connection as a
protocol error before our code sees the PUBACK; the same batch then went out again at every
reconnect, forever, and nothing behind it was delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches, punches_in
from tests.support.mqtt import Collector

Workers = Callable[..., DeliveryWorker]
LIMIT = 12_000  # bytes: a batch of 100 punches is about 60,000


class _SizeLimitMosquitto(LocalMosquitto):
    """A broker that silently limits message size, as a hardened Mosquitto config does."""

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a", encoding="utf-8") as config:
            config.write(f"\nmessage_size_limit {LIMIT}\n")


def test_batches_shrink_below_a_message_size_limit_the_broker_does_not_announce(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    broker = _SizeLimitMosquitto(tmp_path / "limited-broker").start()
    try:
        collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/punches"]).start()
        try:
            outbox.add_punches(make_punches(300))
            with structlog.testing.capture_logs() as logs:
                worker = workers(fast_options(broker.url, batch_bytes=65_536), outbox)
                assert worker.flush(15), worker.status()
            seqs = {
                p["seq"]
                for p in punches_in(
                    collector.wait(
                        lambda ms: len({p["seq"] for p in punches_in(ms)}) >= 300,
                        what="all 300 punches past the size limit",
                    )
                )
            }
            assert seqs == set(range(1, 301))
            assert outbox.stats().pending == 0
            hints = [e for e in logs if "message_size_limit" in str(e.get("hint", ""))]
            assert hints, "the technician is not told about the broker's message size limit"
            assert "65536" in hints[0]["hint"]
        finally:
            collector.stop()
    finally:
        broker.stop()
