"""The daemon's reports: the live status file, systemd's STATUS= line, retained device statuses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__
from agent.daemon.device_state import DeviceSnapshot, DeviceState
from agent.daemon.live_status import (
    device_status_message,
    message_key,
    status_document,
    status_line,
)
from agent.daemon.status_file import write_status
from config.errors import PunchgateError

if TYPE_CHECKING:
    from agent.daemon.supervisor import Supervisor

log = structlog.get_logger("punchgate.daemon")

MAX_BROKER_ERRORS = 64  # distinct broker errors remembered between two connections


class Reporter:
    """Reads the supervisor's parts and says how they are; never raises into the caller."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self._published: dict[str, tuple[Any, ...]] = {}
        # Broker errors already in the recent errors since the broker was last reached: with
        # two brokers down their messages alternate, and recording every change filled all
        # the slots within minutes, pushing a terminal's error out of the status file.
        self._broker_errors: set[str | None] = set()
        self._broker_connected = False
        self._status_error: str | None = None  # logged when it starts and when it ends
        self._last_outbox: dict[str, Any] | None = None  # for the status written after close

    def write_status(self) -> str:
        """Write the status file and send STATUS=; returns the status line."""
        line = self.refresh_status()
        self.sup.notifier.status(line)
        return line

    def refresh_status(self) -> str:
        """Write the status file; returns the line for systemd's STATUS=."""
        snapshots = self.sup.pool.snapshots()
        outbox: dict[str, Any] | None = None
        try:
            if self.sup.state == "stopped":
                outbox = self._last_outbox  # closed by now: its figures as they were last read
            elif self.sup.outbox is not None:
                stats = self.sup.outbox.stats().as_dict()
                stats.pop("devices", None)
                outbox = self._last_outbox = stats
        except PunchgateError as exc:
            self.sup.errors.add("outbox", str(exc))
        broker = None if self.sup.delivery is None else self.sup.delivery.status().as_dict()
        if broker is not None:
            self._note_broker_error(bool(broker.get("connected")), broker.get("last_error"))
        bad = self.sup.unhealthy() if self.sup.state == "running" else []
        agent = self.sup.settings.agent
        doc = status_document(
            state=self.sup.state,
            started_at=self.sup.started_at,
            interval=agent.status_interval,
            gateway_id=agent.gateway_id,
            site=agent.site,
            version=__version__,
            boot=self.sup.boot,
            config=None if self.sup.config_path is None else str(self.sup.config_path),
            healthy=not bad,
            unhealthy=bad,
            snapshots=snapshots,
            outbox=outbox,
            broker=broker,
            maintenance=None if self.sup.maintenance is None else self.sup.maintenance.snapshot(),
            errors=self.sup.errors.items(),
        )
        try:
            write_status(agent.state_dir, doc)
        except OSError as exc:
            if self._status_error is None:
                log.warning(
                    "status_file_failed",
                    error=exc.strerror or str(exc),  # "No space left on device", no [Errno 28]
                    state_dir=str(agent.state_dir),
                    action="punchgate status shows the daemon as stale until it can write; "
                    "check free space and that the state directory is writable",
                )
            self._status_error = str(exc)
        else:
            if self._status_error is not None:
                log.info("status_file_written_again", state_dir=str(agent.state_dir))
            self._status_error = None
        return status_line(
            snapshots,
            None if outbox is None else outbox.get("pending"),
            None if outbox is None else outbox.get("oldest_pending_age_s"),
            bool(broker and broker.get("connected")),
        )

    def _note_broker_error(self, connected: bool, error: str | None) -> None:
        if connected and not self._broker_connected:
            self._broker_errors = {error}  # reached again: the next failures are news
        self._broker_connected = connected
        if error and error not in self._broker_errors:
            if len(self._broker_errors) >= MAX_BROKER_ERRORS:
                self._broker_errors.clear()
            self._broker_errors.add(error)
            self.sup.errors.add("broker", str(error))

    def device_changed(self, snapshot: DeviceSnapshot) -> None:
        """A worker changed state (its thread): record errors, publish the device status."""
        if snapshot.last_error and snapshot.state not in (DeviceState.ONLINE, DeviceState.STOPPED):
            self.sup.errors.add(f"device {snapshot.device_id}", snapshot.last_error)
        if snapshot.state == DeviceState.STOPPED:
            return  # removal and shutdown publish their own
        self.publish_device(snapshot)

    def publish_device(self, snapshot: DeviceSnapshot) -> None:
        """Hand one device's retained status to the delivery worker (sent now or on connect)."""
        delivery = self.sup.delivery
        if delivery is None:
            return
        try:
            delivery.publish_device_status(snapshot.device_id, device_status_message(snapshot))
            self._published[snapshot.device_id] = message_key(snapshot)
        except (ValueError, PunchgateError) as exc:
            log.warning("device_status_not_published", device=snapshot.device_id, error=str(exc))

    def publish_changed_devices(self) -> None:
        """Publish the devices whose figures changed since their last message."""
        for snapshot in self.sup.pool.snapshots():
            if self._published.get(snapshot.device_id) != message_key(snapshot):
                self.publish_device(snapshot)

    def forget(self, device_id: str) -> None:
        """A removed device: out of the gateway status; its next appearance is published afresh."""
        self._published.pop(device_id, None)
        if self.sup.delivery is not None:
            self.sup.delivery.forget_device(device_id)
