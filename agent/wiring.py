"""Settings to drivers: the one place that maps a device's config onto its driver's options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config.errors import ConfigError
from config.settings import SerialDeviceSettings, Settings, ZkDeviceSettings
from drivers import DRIVERS
from drivers.base import Driver
from drivers.serial import serial_options
from drivers.zk import ZkOptions


def zk_options(device: ZkDeviceSettings) -> ZkOptions:
    """``ZkOptions`` from a ``[[devices]]`` entry of kind ``zk``."""
    return ZkOptions(
        host=device.host,
        port=device.port,
        transport=device.transport,
        comm_key=device.comm_key,
        timeout=device.timeout,
        live=device.live,
        clock_sync=device.clock_sync,
        max_drift=device.max_drift,
        clear_after_read=device.clear_after_read,
        clear_threshold=device.clear_threshold,
        encoding=device.encoding,
    )


def _serial_options(device: SerialDeviceSettings) -> object:
    return serial_options(device.model_dump())


# kind -> options builder; the driver factory for the same kind is in ``drivers.DRIVERS``.
_OPTIONS: dict[str, Callable[[Any], object]] = {
    "zk": zk_options,
    "serial": _serial_options,
}


def build_driver(settings: Settings, device: ZkDeviceSettings | SerialDeviceSettings) -> Driver:
    """The driver for one configured device (not opened yet)."""
    factory = DRIVERS.get(device.kind)
    options = _OPTIONS.get(device.kind)
    if factory is None or options is None:
        raise ConfigError(
            f"device {device.id}: no driver for kind {device.kind!r} in this build of punchgate"
        )
    return factory(device.id, options(device), settings.device_timezone(device))
