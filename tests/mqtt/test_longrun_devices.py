"""A terminal removed while the broker is away: its last status still goes out, unlisted."""

from __future__ import annotations

from collections.abc import Callable

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker, DeviceStatus
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options
from tests.support.mqtt import Collector
from tests.support.wait import wait_for


def test_a_terminal_removed_during_an_outage_is_published_as_such_and_left_out_of_the_birth(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Callable[..., DeliveryWorker],
    collectors: Callable[..., Collector],
) -> None:
    worker = workers(fast_options(broker.url), outbox)
    worker.publish_device_status("lobby-1", DeviceStatus("lobby-1", "online"))
    worker.publish_device_status("spare-1", DeviceStatus("spare-1", "online"))
    worker.connection.wait_connected(10)
    broker.stop()
    wait_for(lambda: not worker.status().connected, timeout=10, what="the outage")
    gone = DeviceStatus("spare-1", "offline", last_error="removed from the configuration")
    worker.publish_device_status("spare-1", gone)
    worker.forget_device("spare-1")
    broker.start()
    sub = collectors([f"{PREFIX}/{GATEWAY}/#"])
    sub.wait(
        lambda ms: any(
            m.topic.endswith("/devices/spare-1/status")
            and m.json()["last_error"] == "removed from the configuration"
            for m in ms
        ),
        timeout=10,
        what="spare-1's removal, retained",
    )
    births = [m for m in sub.on(f"{GATEWAY}/status") if m.json()["state"] == "online"]
    assert births and [d["device_id"] for d in births[-1].json()["devices"]] == ["lobby-1"]
