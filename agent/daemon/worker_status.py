"""What a device worker reports: its snapshot, its heartbeat, its state changes, as one mixin.

A state change ("online", "unreachable", "failed", ...) is logged once when it starts and once
when it ends, and handed to the worker's listener; a retry that fails the same way again is only
a debug line. The heartbeat is the bound the current step must end within: past it, the worker
counts as hung.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.daemon.device_state import (
    DeviceConfig,
    DeviceSnapshot,
    DeviceState,
    classify,
    format_duration,
    now_iso,
)
from agent.daemon.unsaved import MAX_UNSAVED
from config.errors import DeviceUnavailable, PunchgateError
from drivers.backoff import Backoff
from drivers.base import DeviceInfo, Driver
from drivers.timeutil import to_device_local


class WorkerStatus:
    """Mixed into ``DeviceWorker``, which provides the attributes declared here."""

    device: DeviceConfig
    device_id: str
    tz: ZoneInfo
    _lock: threading.Lock
    _snapshot: DeviceSnapshot
    _on_change: Callable[[DeviceSnapshot], None] | None
    _backoff: Backoff
    _memoryless: bool
    _trouble_since: float | None
    _slack: float
    _deadline: float
    _log: Any

    def snapshot(self) -> DeviceSnapshot:
        """What the worker last reported about its terminal."""
        with self._lock:
            return self._snapshot

    def _beat(self, bound: float) -> None:
        self._deadline = time.monotonic() + bound + self._slack

    def _observe(self, info: DeviceInfo) -> None:
        """Record what the terminal says; drift is reported, the driver alarms and corrects it."""
        drift = info.extra.get("drift_seconds")  # the driver's own reading, when it has one
        if not isinstance(drift, int | float) and info.clock is not None:
            # Wall clock against wall clock, as the driver measures: an instant via localize()
            # read a right terminal as an hour behind in the repeated hour of autumn.
            drift = (info.clock - to_device_local(datetime.now(UTC), self.tz)).total_seconds()
        drift = None if not isinstance(drift, int | float) else round(float(drift), 1)
        with self._lock:
            self._snapshot = replace(
                self._snapshot,
                last_seen=now_iso(),
                drift_s=drift,
                records=info.records,
                record_capacity=info.record_capacity,
                users=info.users,
                serial=info.serial,
            )

    def _reflect_link(self, driver: Driver) -> None:
        """Drivers riding out a lost link inside ``live`` (serial) report it via ``connected``."""
        link = getattr(driver, "connected", None)
        if link is False and self.snapshot().state == DeviceState.ONLINE:
            self._failed(
                DeviceUnavailable(f"{self.device_id}: the link is down; the driver is reconnecting")
            )
        elif link is True and self.snapshot().state != DeviceState.ONLINE:
            self._succeeded()

    def _succeeded(self) -> None:
        self._backoff.reset()
        previous = self.snapshot().state
        if previous == DeviceState.ONLINE:
            return
        if self._trouble_since is not None:
            outage = format_duration(time.monotonic() - self._trouble_since)
            self._log.info("device_recovered", after=outage, was=previous)
        else:
            self._log.info("device_online")
        self._trouble_since = None
        self._set(state=DeviceState.ONLINE, last_error=None)

    def _failed(self, exc: BaseException) -> None:
        state, action = classify(exc)
        if state == DeviceState.STORE_ERROR and self._memoryless:
            action = (
                "the outbox refused punches: the ones read from the line are kept in memory "
                f"(up to {MAX_UNSAVED}) and stored when it takes them again; free space in the "
                "state directory"
            )
        message = str(exc) or type(exc).__name__
        previous = self.snapshot()
        if self._trouble_since is None:
            self._trouble_since = time.monotonic()
        if previous.state != state:
            event = f"device_{state.value}"
            if isinstance(exc, PunchgateError):
                self._log.warning(event, error=message, action=action)
            else:
                self._log.error(event, error=message, action=action, exc_info=exc)
            self._set(state=state, last_error=message)
        else:
            self._log.debug("device_retry_failed", error=message)
            if previous.last_error != message:
                with self._lock:
                    self._snapshot = replace(self._snapshot, last_error=message)

    def _set(self, **changes: Any) -> None:
        state = changes.get("state")
        if state is not None:
            changes["state"] = DeviceState(state).value
            changes["since"] = now_iso()
        with self._lock:
            self._snapshot = replace(self._snapshot, **changes)
            snapshot = self._snapshot
        if self._on_change is not None and state is not None:
            try:
                self._on_change(snapshot)
            except Exception as exc:  # noqa: BLE001 - a listener must not break the worker
                self._log.warning("device_status_listener_failed", error=str(exc))
