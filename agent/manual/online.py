"""Is a device online right now: the running daemon's view, else a quick connect.

Corrections are for terminals that were offline; the validator asks this once per device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.doctor.daemon_view import daemon_view
from agent.manual.request import DeviceConfig
from config import Settings
from config.errors import DeviceAuthError, DeviceError
from config.settings import SerialDeviceSettings
from drivers.base import Driver

OnlineProbe = Callable[[DeviceConfig], "Online"]


@dataclass(frozen=True)
class Online:
    """Whether a device answers right now; ``online`` is None when it cannot be told."""

    online: bool | None
    how: str  # "the running daemon sees it online", "answers on 10.0.0.20:4370", ...


def make_online_probe(
    settings: Settings,
    build: Callable[[Settings, DeviceConfig], Driver],
    *,
    ping_timeout: float = 2.0,
) -> OnlineProbe:
    """Is a device online: the running daemon's view, else a quick connect to the terminal."""
    view = daemon_view(settings.agent.state_dir)

    def probe(device: DeviceConfig) -> Online:
        if view.running:
            state = view.device_state(device.id)
            if state is None:
                return Online(None, "the running daemon does not report it")
            return Online(state == "online", f"the running daemon sees it {state}")
        if isinstance(device, SerialDeviceSettings):
            return Online(None, "a serial clock cannot be pinged while the daemon is stopped")
        quick = device.model_copy(update={"timeout": min(device.timeout, ping_timeout)})
        where = f"{device.host}:{device.port}"
        try:
            driver = build(settings, quick)
            driver.open()
        except DeviceAuthError as exc:  # alive, with its punches: only the key is wrong
            return Online(True, f"it answers on {where}, but: {exc}")
        except DeviceError as exc:
            return Online(False, f"no answer on {where}: {exc}")
        driver.close()
        return Online(True, f"it answers on {where}")

    return probe
