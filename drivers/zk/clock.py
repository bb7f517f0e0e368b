"""The terminal clock: read it, measure drift against the gateway, set it."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from config.errors import ProtocolError, UsageError
from drivers.timeutil import gateway_clock_problem, to_device_local
from drivers.zk import protocol as p
from drivers.zk.transport import ZkConnection

Now = Callable[[], datetime]  # aware UTC "now"; injectable so tests and drift math agree
# The most clock_sync corrects on its own: a terminal that missed a DST change, or months of
# drift. Beyond it one of the two clocks is wrong (a gateway booted with its shutdown time
# before NTP answered, a reset terminal), and setting the terminal could make it the wrong one.
AUTO_SYNC_LIMIT_S = 3600.0


def utc_now() -> datetime:
    """The gateway's clock as an aware UTC time."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ClockReading:
    """Terminal and gateway clocks at one instant, both as device-local wall-clock time."""

    device_time: datetime | None  # naive; None when the terminal's clock holds an impossible date
    gateway_time: datetime  # naive, the gateway's clock in the device's timezone
    drift_seconds: float | None  # device minus gateway; positive when the terminal is ahead

    def exceeds(self, max_drift: float) -> bool:
        """True when the drift is beyond ``max_drift`` seconds, or the clock is unreadable."""
        return self.drift_seconds is None or abs(self.drift_seconds) > max_drift

    def to_dict(self) -> dict[str, object]:
        """Plain values for JSON output."""
        return {
            "device_time": self.device_time.isoformat() if self.device_time else None,
            "gateway_time": self.gateway_time.isoformat(),
            "drift_seconds": self.drift_seconds,
        }


def read_clock(conn: ZkConnection, tz: ZoneInfo, now: Now = utc_now) -> ClockReading:
    """GET_TIME, compared with the gateway clock taken halfway through the round trip."""
    before = now()
    reply = conn.request(p.CMD_GET_TIME, retries=2)
    after = now()
    if reply.command != p.ACK_OK or len(reply.data) < 4:
        raise ProtocolError(
            f"{conn.endpoint.label} answered GET_TIME with code {reply.command} and "
            f"{len(reply.data)} bytes: retry; report the firmware if it persists"
        )
    gateway = to_device_local(before + (after - before) / 2, tz)
    try:
        device: datetime | None = p.decode_time(struct.unpack_from("<I", reply.data)[0])
    except ProtocolError:
        device = None
    # The terminal counts whole seconds (it truncates), so compare with the gateway truncated too.
    gateway = gateway.replace(microsecond=0)
    drift = None if device is None else (device - gateway).total_seconds()
    return ClockReading(device, gateway, drift)


def beyond_auto_sync(drift: float | None, max_drift: float) -> bool:
    """Whether a correction by ``drift`` seconds is more than is made without being forced.

    An hour (a missed DST change) plus ``max_drift``: beyond that one of the two clocks is
    wrong, often the gateway's (booted with its shutdown time before NTP answered).
    """
    return drift is not None and abs(drift) > AUTO_SYNC_LIMIT_S + max_drift


def auto_sync_refusal(
    label: str, device_id: str, reading: ClockReading, max_drift: float, now: Now
) -> str | None:
    """Why ``clock_sync`` must not set this terminal on its own now, or None when it may."""
    problem = gateway_clock_problem(now())
    if problem is not None:
        return problem
    drift = reading.drift_seconds
    if drift is not None and beyond_auto_sync(drift, max_drift):
        return (
            f"{label} is {abs(drift):.0f}s {'ahead of' if drift > 0 else 'behind'} the gateway, "
            f"more than clock_sync corrects on its own ({AUTO_SYNC_LIMIT_S:.0f}s): check the "
            "gateway clock (timedatectl: NTP synchronized?) and the terminal's, then run "
            f"`punchgate devices time {device_id} --set --force` if the gateway is right"
        )
    return None


def set_clock(conn: ZkConnection, when: datetime) -> None:
    """SET_TIME to a naive device-local time."""
    if when.tzinfo is not None:
        raise ValueError("set_clock() takes a naive device-local time")
    if not 2000 <= when.year <= 2099:
        # The 4-byte time keeps only the year's last two digits: 1970 would become 2070.
        raise UsageError(
            f"cannot set {conn.endpoint.label} to {when:%Y-%m-%d %H:%M:%S}: the terminal "
            "holds only years 2000 to 2099"
        )
    value = p.encode_time(when.replace(microsecond=0))
    reply = conn.request(p.CMD_SET_TIME, struct.pack("<I", value))
    if reply.command != p.ACK_OK:
        raise ProtocolError(
            f"{conn.endpoint.label} refused SET_TIME (code {reply.command}): the terminal may "
            "lock its clock (menu or admin setting); set it on the terminal"
        )


def sync_clock(conn: ZkConnection, tz: ZoneInfo, now: Now = utc_now) -> ClockReading:
    """Set the terminal to the gateway's time (device-local) and return a fresh reading.

    Refused (``UsageError``) while the gateway clock is not set: its time would be wrong on
    every punch the terminal records afterwards.
    """
    problem = gateway_clock_problem(now())
    if problem is not None:
        raise UsageError(f"not setting the clock of {conn.endpoint.label}: {problem}")
    # Half a second ahead: the terminal truncates, so this lands nearest to the true second.
    set_clock(conn, to_device_local(now() + timedelta(milliseconds=500), tz))
    return read_clock(conn, tz, now)
