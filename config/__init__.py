"""Typed settings, their loader, and the shared error tree."""

from config.errors import ConfigError, PunchgateError
from config.loader import DEFAULT_CONFIG_PATH, load_settings
from config.settings import (
    AgentSettings,
    DeviceSettings,
    MqttSettings,
    OutboxSettings,
    SerialDeviceSettings,
    Settings,
    ZkDeviceSettings,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AgentSettings",
    "ConfigError",
    "DeviceSettings",
    "MqttSettings",
    "OutboxSettings",
    "PunchgateError",
    "SerialDeviceSettings",
    "Settings",
    "ZkDeviceSettings",
    "load_settings",
]
