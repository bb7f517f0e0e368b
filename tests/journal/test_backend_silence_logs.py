"""A backend that stops acknowledging, then answers: one warning, then one recovery line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches
from tests.support.wait import wait_for


def _ack(port: int, payload: dict[str, Any]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        client.publish(f"{PREFIX}/{GATEWAY}/ack", json.dumps(payload), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_silent_backend_is_warned_once_and_its_return_is_logged(
    tmp_path: Path, broker: LocalMosquitto, logs: list[Any]
) -> None:
    outbox = Outbox.open(tmp_path / "outbox.db", GATEWAY)
    outbox.add_punches(make_punches(5))
    worker = DeliveryWorker(
        fast_options(broker.url, ack="backend", ack_timeout=0.2), outbox, GATEWAY, site="HQ"
    ).start()
    try:
        wait_for(
            lambda: sum("acknowledgement within" in e["event"] for e in logs) >= 3,
            timeout=15,
            what="three ack timeouts in a row",
        )
        _ack(broker.port, {"contiguous_seq": 5})
        wait_for(lambda: outbox.stats().pending == 0, timeout=10, what="delivered after the ack")
    finally:
        worker.stop(timeout=2)
        outbox.close()
    loud = [e for e in logs if e["log_level"] in ("warning", "error")]
    silent = [e for e in loud if "acknowledgement within" in e["event"]]
    assert len(silent) == 1, silent  # the state change, not every re-send
    assert "action" in silent[0], silent[0]
    back = [e for e in logs if e["event"] == "acknowledgements resumed"]
    assert len(back) == 1 and back[0]["log_level"] == "info", back
