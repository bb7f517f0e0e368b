"""ZKTeco-family terminals over TCP or UDP (``kind = "zk"``), and their simulator."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from drivers.zk.driver import ReadSummary, ZkDriver
from drivers.zk.options import ZkOptions
from drivers.zk.punches import INVALID_DEVICE_TIME

__all__ = ["INVALID_DEVICE_TIME", "ReadSummary", "ZkDriver", "ZkOptions", "build_zk_driver"]


def build_zk_driver(device_id: str, options: ZkOptions, tz: ZoneInfo) -> ZkDriver:
    """The driver for one ZK terminal."""
    return ZkDriver(device_id, options, tz)
