"""The set of device workers: start, stop and replace them one by one, never all at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from agent.daemon.device_state import DeviceConfig, DeviceSnapshot
from agent.daemon.device_worker import DeviceWorker
from agent.daemon.outbox_sink import PunchSink
from agent.daemon.serial_claims import SerialClaims
from config.settings import Settings
from drivers.base import Driver

log = structlog.get_logger("punchgate.daemon")

DriverFactory = Callable[[Settings, DeviceConfig], Driver]
"""Builds a driver for one device from the settings (``agent.wiring.build_driver``)."""

ABANDON_GRACE_S = 0.5  # after closing a stuck driver from outside, wait this long for its thread


class DevicePool:
    """Owns one ``DeviceWorker`` per enabled device."""

    def __init__(
        self,
        factory: DriverFactory,
        sink: PunchSink,
        *,
        on_change: Callable[[DeviceSnapshot], None] | None = None,
        worker_options: dict[str, Any] | None = None,
    ) -> None:
        self._factory = factory
        self._sink = sink
        self._on_change = on_change
        self._options = dict(worker_options or {})
        self._workers: dict[str, DeviceWorker] = {}
        self._claims = SerialClaims()  # one terminal, one device id

    def __contains__(self, device_id: str) -> bool:
        return device_id in self._workers

    @property
    def ids(self) -> list[str]:
        return list(self._workers)

    def get(self, device_id: str) -> DeviceWorker | None:
        return self._workers.get(device_id)

    def workers(self) -> list[DeviceWorker]:
        return list(self._workers.values())

    def start(self, settings: Settings, device_ids: Iterable[str]) -> None:
        """Start a worker for each of these devices (already running ones are left alone)."""
        for device_id in device_ids:
            if device_id in self._workers:
                continue
            device = settings.device(device_id)
            if device is None:
                continue
            holder: list[DeviceWorker] = []
            worker = DeviceWorker(
                device,
                _bind(self._factory, settings, device),
                self._sink,
                settings.device_timezone(device),
                on_change=self._relay(device_id, holder),
                claims=self._claims,
                **self._options,
            )
            holder.append(worker)
            self._workers[device_id] = worker  # before it runs: its first change is relayed
            worker.start()
            log.info("device_worker_started", device=device_id, kind=device.kind)

    def _relay(
        self, device_id: str, holder: list[DeviceWorker]
    ) -> Callable[[DeviceSnapshot], None] | None:
        """``on_change`` for the worker in ``holder``, muted once it no longer runs the device.

        A worker left behind by a reload (hung in a read) fails later: relayed, its error
        overwrote the retained "removed from the configuration" and listed the removed
        terminal again in the gateway status (or, for a changed one, stood for the new worker).
        """
        on_change = self._on_change
        if on_change is None:
            return None

        def relay(snapshot: DeviceSnapshot) -> None:
            if holder and self._workers.get(device_id) is holder[0]:
                on_change(snapshot)

        return relay

    def stop(self, device_ids: Iterable[str], timeout: float) -> list[str]:
        """Stop these workers within ``timeout`` s; returns the ids that did not stop in time."""
        chosen = [self._workers.pop(d) for d in list(device_ids) if d in self._workers]
        for worker in chosen:
            worker.stop()  # all at once: they wind down in parallel
        deadline = time.monotonic() + timeout
        late = [w for w in chosen if not w.join(deadline - time.monotonic())]
        # Close their drivers from outside to break blocking reads, all at once: a close may
        # itself wait (a goodbye to a terminal that does not answer), and one after another
        # four hung terminals held a 2 s shutdown for 7 s.
        for worker in late:
            threading.Thread(
                target=worker.abandon, name=f"abandon-{worker.device_id}", daemon=True
            ).start()
        grace = time.monotonic() + ABANDON_GRACE_S
        stuck = [w.device_id for w in late if not w.join(grace - time.monotonic())]
        for device_id in stuck:
            log.warning(
                "device_worker_stop_timeout",
                device=device_id,
                action="left behind; nothing is lost (its punches are stored per transaction)",
            )
        return stuck

    def stop_all(self, timeout: float) -> list[str]:
        return self.stop(self.ids, timeout)

    def snapshots(self) -> list[DeviceSnapshot]:
        return [w.snapshot() for w in self._workers.values()]

    def unhealthy(self, now: float | None = None) -> list[str]:
        """Workers whose thread died or overran its heartbeat (hung), not merely offline."""
        return [w.device_id for w in self._workers.values() if not w.healthy(now)]


def _bind(factory: DriverFactory, settings: Settings, device: DeviceConfig) -> Callable[[], Driver]:
    return lambda: factory(settings, device)
