"""A device worker for a ZK simulator's terminal, as the daemon builds one, clearing its log."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from agent.daemon.device_worker import DeviceWorker
from agent.daemon.outbox_sink import PunchSink
from agent.wiring import zk_options
from config.settings import ZkDeviceSettings
from drivers.backoff import Backoff
from drivers.zk import ZkDriver
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import TZ


def clearing_worker(
    sim: ZkSimulator, sink: PunchSink, *, live: bool = False, **options: Any
) -> DeviceWorker:
    """A started worker for "lobby-1" on ``sim``: polled every second, cleared past 90 %."""
    device = ZkDeviceSettings(
        id="lobby-1", kind="zk", host="127.0.0.1", port=sim.port, poll_interval=1,
        timeout=2, clear_after_read=True, clear_threshold=0.9, live=live,
    )  # fmt: skip
    return DeviceWorker(
        device,
        lambda: ZkDriver(device.id, zk_options(device), ZoneInfo(str(TZ))),
        sink,
        TZ,
        backoff=Backoff(0.01, 0.05),
        **options,
    ).start()
