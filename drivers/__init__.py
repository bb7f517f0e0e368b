"""Terminal drivers: one package per family, yielding ``Punch`` values.

``DRIVERS`` maps a config ``kind`` to the factory ``(device_id, options, tz) -> Driver`` of that
family; the agent builds each family's options from its settings (``agent.wiring``).
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.base import Driver
from drivers.serial import build_serial_driver
from drivers.zk import build_zk_driver

DRIVERS: dict[str, Callable[..., Driver]] = {
    "zk": build_zk_driver,
    "serial": build_serial_driver,
}

__all__ = ["DRIVERS"]
