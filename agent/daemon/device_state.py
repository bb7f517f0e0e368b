"""What a device worker is and says: its states, its snapshot, and the small rules around them."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from config.errors import (
    DeviceAuthError,
    DeviceError,
    DeviceIdentityError,
    OutboxError,
    UsageError,
)
from config.settings import SerialDeviceSettings, ZkDeviceSettings
from drivers.base import Driver
from drivers.timeutil import gateway_clock_problem, to_device_local
from drivers.zk.clock import AUTO_SYNC_LIMIT_S, beyond_auto_sync

DeviceConfig = ZkDeviceSettings | SerialDeviceSettings


class DeviceState(enum.StrEnum):
    """Where a device worker is; only changes between these are logged."""

    STARTING = "starting"
    ONLINE = "online"
    UNREACHABLE = "unreachable"  # network, timeout, refused, garbage: retried with backoff
    FAILED = "failed"  # wrong comm key or a different terminal: a person must act; still retried
    STORE_ERROR = "store_error"  # the outbox refused the punches (disk full, ...): retried
    STOPPED = "stopped"


@dataclass(frozen=True)
class DeviceSnapshot:
    """What the live status, STATUS= and the device status message show about one terminal."""

    device_id: str
    kind: str
    name: str
    state: str
    since: str
    last_seen: str | None = None
    last_error: str | None = None
    drift_s: float | None = None
    records: int | None = None
    record_capacity: int | None = None
    users: int | None = None
    serial: str | None = None
    stored: int = 0  # punches stored since this worker started
    duplicates: int = 0  # punches read again and recognised by id

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_duration(seconds: float) -> str:
    """``252`` -> ``"4m12s"``; what a person reads in "recovered after ...\"."""
    seconds = int(max(0, round(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    text = "".join(f"{n}{u}" for n, u in parts if n)
    return text or "0s"


def now_iso() -> str:
    """Now in UTC, to the second (snapshot times)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def set_clock(
    driver: Driver,
    tz: ZoneInfo,
    now: Callable[[], datetime] | None = None,
    max_drift: float | None = None,
) -> dict[str, Any]:
    """Set a terminal's clock to now in its timezone; call it on the device's own thread.

    With ``max_drift`` (not forced), a terminal further off than clock_sync corrects on its own
    is left as it is: a gateway booted with a stale time (no RTC, NTP not answered yet) would
    set it back by days.
    """
    setter = getattr(driver, "set_time", None)
    if setter is None:
        raise UsageError("this kind of device has no clock to set")
    gateway = now() if now is not None else datetime.now(UTC)
    problem = gateway_clock_problem(gateway)
    if problem is not None:  # the terminal's own clock is the better one until NTP answers
        raise UsageError(f"terminal clock left as it is: {problem}")
    reader = getattr(driver, "clock", None)
    if max_drift is not None and reader is not None:
        drift = getattr(reader(), "drift_seconds", None)
        if isinstance(drift, int | float) and beyond_auto_sync(drift, max_drift):
            raise UsageError(
                f"terminal clock left as it is: it is {abs(drift):.0f}s "
                f"{'ahead of' if drift > 0 else 'behind'} the gateway, more than time-sync sets "
                f"without force ({AUTO_SYNC_LIMIT_S + max_drift:.0f}s); check the gateway "
                'clock (timedatectl: NTP synchronized?), then send time-sync again with "force": '
                "true"
            )
    local = to_device_local(gateway, tz)
    reading = setter(local)
    result: dict[str, Any] = {"ok": True, "set_to": local.isoformat(timespec="seconds")}
    drift = getattr(reading, "drift_seconds", None)  # ZK drivers read the clock back
    if isinstance(drift, int | float):
        result["drift_after_s"] = round(float(drift), 1)
    return result


def is_live(device: DeviceConfig) -> bool:
    """Serial lines only ever deliver live; ZK terminals when ``live = true``."""
    return isinstance(device, SerialDeviceSettings) or bool(getattr(device, "live", False))


def classify(exc: BaseException) -> tuple[DeviceState, str]:
    """The state a failure puts a device in, and what to do about it."""
    if isinstance(exc, DeviceAuthError):
        return DeviceState.FAILED, "check comm_key in the config against the terminal"
    if isinstance(exc, DeviceIdentityError):
        return DeviceState.FAILED, "a different terminal answers at this address; check the config"
    if isinstance(exc, DeviceError):
        return DeviceState.UNREACHABLE, "check power, network and host/port; retrying with backoff"
    if isinstance(exc, OutboxError):
        return DeviceState.STORE_ERROR, "the outbox refused punches; they stay on the terminal"
    return DeviceState.UNREACHABLE, "unexpected error; retrying with backoff (report it)"
