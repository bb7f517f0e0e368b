"""What the running daemon says about itself and its devices, read from its status file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.daemon.status_file import read_status


@dataclass(frozen=True)
class DaemonView:
    """``running`` is False when there is no fresh status from a live daemon."""

    running: bool
    pid: int | None = None
    age_s: float | None = None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    broker: dict[str, Any] = field(default_factory=dict)  # its connection: connected, last_error

    def device_state(self, device_id: str) -> str | None:
        """The daemon's state for a device ("online", "unreachable", ...), None when unknown."""
        if not self.running:
            return None
        state = self.devices.get(device_id, {}).get("state")
        return None if state is None else str(state)


def daemon_view(state_dir: Path) -> DaemonView:
    """The daemon's view, or ``DaemonView(running=False)`` when it is not running."""
    try:
        status = read_status(state_dir)
    except PermissionError:
        # Run without sudo: the outbox checks say so and what to do; the doctor goes on.
        return DaemonView(running=False)
    if not status or not status.get("running"):
        return DaemonView(running=False, pid=None if not status else status.get("pid"))
    return DaemonView(
        running=True,
        pid=status.get("pid"),
        age_s=status.get("age_s"),
        devices=_devices(status.get("devices")),
        broker=status["broker"] if isinstance(status.get("broker"), dict) else {},
    )


def _devices(raw: Any) -> dict[str, dict[str, Any]]:
    # Accept both shapes a status document may use: a list of snapshots or a map by device id.
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items() if isinstance(v, dict)}
    if isinstance(raw, list):
        return {str(d["device_id"]): d for d in raw if isinstance(d, dict) and "device_id" in d}
    return {}
