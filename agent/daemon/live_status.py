"""What the daemon says about itself: the status file document, STATUS= line, device messages."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from agent.daemon.device_state import DeviceSnapshot, DeviceState
from agent.daemon.status_file import process_start
from agent.mqtt.status import DeviceStatus

LAST_ERRORS = 20  # how many recent errors the status file keeps
PER_SOURCE = 4  # of which one source (a terminal, the broker) may hold at most this many


class ErrorLog:
    """The most recent errors (device, broker, maintenance, reload), newest last; thread-safe.

    An error a source already has in the list is moved to the end with a ``count``, and one
    source keeps at most ``per_source`` entries: a terminal flapping all night added an entry
    per flap and pushed every other terminal's and the broker's errors out of the list.
    """

    def __init__(self, size: int = LAST_ERRORS, per_source: int = PER_SOURCE) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self._size = size
        self._per_source = per_source
        self._lock = threading.Lock()

    def add(self, source: str, error: str) -> None:
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source,
            "error": error[:500],
        }
        with self._lock:
            for old in list(self._items):
                if old["source"] == source and old["error"] == entry["error"]:
                    self._items.remove(old)
                    entry["count"] = int(old.get("count", 1)) + 1
            self._items.append(entry)
            own = [e for e in self._items if e["source"] == source]
            for old in own[: max(0, len(own) - self._per_source)]:
                self._items.remove(old)
            while len(self._items) > self._size:
                self._items.popleft()

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._items]


def device_summary(snapshots: list[DeviceSnapshot]) -> str:
    """``"3/4 devices online (lobby-2 unreachable)"``."""
    if not snapshots:
        return "no devices"
    online = [s for s in snapshots if s.state == DeviceState.ONLINE]
    others = [f"{s.device_id} {s.state}" for s in snapshots if s.state != DeviceState.ONLINE]
    text = f"{len(online)}/{len(snapshots)} devices online"
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        text += f" ({shown})"
    return text


def status_line(
    snapshots: list[DeviceSnapshot], backlog: int | None, oldest: float | None, broker: bool
) -> str:
    """The one line systemd shows in ``systemctl status punchgate``."""
    parts = [device_summary(snapshots)]
    if backlog is None:
        parts.append("backlog unknown")
    elif backlog and oldest is not None:
        parts.append(f"backlog {backlog} (oldest {int(oldest)}s)")
    else:
        parts.append(f"backlog {backlog}")
    parts.append("broker connected" if broker else "broker disconnected")
    return ", ".join(parts)


def device_status_message(snapshot: DeviceSnapshot) -> DeviceStatus:
    """The retained MQTT status of one terminal (the contract knows only online/offline)."""
    return DeviceStatus(
        device_id=snapshot.device_id,
        state="online" if snapshot.state == DeviceState.ONLINE else "offline",
        last_seen=None
        if snapshot.last_seen is None
        else datetime.fromisoformat(snapshot.last_seen),
        clock_drift_s=snapshot.drift_s,
        records=snapshot.records,
        record_capacity=snapshot.record_capacity,
        last_error=snapshot.last_error,
        kind=snapshot.kind,
        serial=snapshot.serial,
        users=snapshot.users,
    )


def message_key(snapshot: DeviceSnapshot) -> tuple[Any, ...]:
    """What must change before a device status is published again (not its clock ticking)."""
    drift = None if snapshot.drift_s is None else round(snapshot.drift_s)
    return (
        snapshot.state == DeviceState.ONLINE,
        snapshot.last_error,
        drift,
        snapshot.records,
        snapshot.record_capacity,
        snapshot.users,
        snapshot.serial,
    )


def status_document(
    *,
    state: str,
    started_at: str,
    interval: float,
    gateway_id: str,
    site: str,
    version: str,
    boot: int,
    config: str | None,
    healthy: bool,
    unhealthy: list[str],
    snapshots: list[DeviceSnapshot],
    outbox: dict[str, Any] | None,
    broker: dict[str, Any] | None,
    maintenance: dict[str, Any] | None,
    errors: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON document written to the status file (see ``status_file.read_status``)."""
    now = time.time()
    return {
        "state": state,
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),  # tells a reused pid from this process
        "started_at": started_at,
        "updated_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "updated_unix": round(now, 3),
        "interval_s": interval,
        "gateway_id": gateway_id,
        "site": site,
        "version": version,
        "boot": boot,
        "config": config,
        "healthy": healthy,
        "unhealthy": unhealthy,
        "devices": [s.as_dict() for s in snapshots],
        "backlog": None if outbox is None else outbox.get("pending"),
        "oldest_pending_age_s": None if outbox is None else outbox.get("oldest_pending_age_s"),
        "outbox": outbox,
        "broker": broker,
        "maintenance": maintenance,
        "last_errors": errors,
    }
