"""What every doctor check step on a broker URL shares: its result family and the wording of
its waits and OS errors."""

from __future__ import annotations

from agent.mqtt.options import MqttOptions

FAMILY = "broker"


def limit_note(options: MqttOptions, timeout: float) -> str:
    """Names the config key when the wait was the daemon's own connect timeout."""
    return " (mqtt.connect_timeout)" if timeout >= options.connect_timeout else ""


def os_reason(exc: OSError, timeout: float) -> str:
    """An OSError in words ("Connection reset by peer"), not Python's "[Errno 104] ..."."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return exc.strerror or str(exc)
