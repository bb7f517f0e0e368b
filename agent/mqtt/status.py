"""Status payloads: the gateway's retained birth/offline message and each terminal's status."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from agent.mqtt.contract import CONTRACT_VERSION, utc_timestamp

BOOT_FILE = "boot-counter"


def next_boot_counter(state_dir: Path) -> int:
    """Increment and return the boot counter kept in ``{state_dir}/boot-counter``.

    A missing or unreadable file starts again at 1: the counter tells restarts apart, it is not
    an identity, so losing it is harmless.
    """
    path = state_dir / BOOT_FILE
    try:
        previous = int(path.read_text(encoding="ascii").strip() or 0)
    except (OSError, ValueError):
        previous = 0
    current = previous + 1
    tmp = path.with_suffix(".tmp")
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp.write_text(f"{current}\n", encoding="ascii")
    os.replace(tmp, path)  # atomic: a crash leaves the old or the new value, never half of one
    return current


@dataclass(frozen=True)
class GatewayIdentity:
    """What every gateway status message repeats."""

    gateway_id: str
    site: str
    version: str
    boot: int
    started_at: datetime
    outbox_id: str  # names the seq numbering of the punches (see common.json)

    def offline(self) -> dict[str, Any]:
        """The offline message: published on clean shutdown and registered as the last will.

        It carries no time so that both are byte-identical.
        """
        return {
            "state": "offline",
            "gateway_id": self.gateway_id,
            "site": self.site,
            "version": self.version,
            "contract": CONTRACT_VERSION,
            "outbox_id": self.outbox_id,
            "boot": self.boot,
            "started_at": utc_timestamp(self.started_at),
        }

    def online(
        self,
        *,
        broker: str | None,
        devices: dict[str, str],
        backlog: int,
        oldest_pending_age_s: float | None,
        delivered: int,
    ) -> dict[str, Any]:
        """The birth message published (retained) on every connect."""
        out: dict[str, Any] = {
            "state": "online",
            "gateway_id": self.gateway_id,
            "site": self.site,
            "version": self.version,
            "contract": CONTRACT_VERSION,
            "outbox_id": self.outbox_id,
            "boot": self.boot,
            "time": utc_timestamp(),
            "started_at": utc_timestamp(self.started_at),
            "devices": [{"device_id": d, "state": s} for d, s in sorted(devices.items())],
            "backlog": backlog,
            "oldest_pending_age_s": (
                None if oldest_pending_age_s is None else round(oldest_pending_age_s, 3)
            ),
            "delivered": delivered,
        }
        if broker is not None:
            out["broker"] = broker
        return out


@dataclass(frozen=True)
class DeviceStatus:
    """One terminal's status as the daemon knows it; ``payload()`` is the retained message."""

    device_id: str
    state: Literal["online", "offline"]
    last_seen: datetime | None = None
    clock_drift_s: float | None = None
    records: int | None = None
    record_capacity: int | None = None
    last_error: str | None = None
    kind: str | None = None
    serial: str | None = None
    users: int | None = None

    def payload(self, gateway_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "gateway_id": gateway_id,
            "device_id": self.device_id,
            "state": self.state,
            "time": utc_timestamp(),
            "last_seen": None if self.last_seen is None else utc_timestamp(self.last_seen),
            "clock_drift_s": None if self.clock_drift_s is None else round(self.clock_drift_s, 3),
            "records": self.records,
            "record_capacity": self.record_capacity,
            "last_error": None if self.last_error is None else self.last_error[:1000],
        }
        for key in ("kind", "serial", "users"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out
