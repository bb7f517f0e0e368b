"""The daemon: builds everything from ``Settings``, supervises it, reloads it, shuts it down.

Threads: one per device (``DeviceWorker``), the delivery worker (and its network and command
threads), maintenance. The main thread only waits for signals and timers (``ServeLoop``): it
writes the live status, tells systemd how things are (STATUS=, and WATCHDOG=1 only while every
worker thread is alive and within its heartbeat bound), and applies SIGHUP reloads and the
SIGTERM/SIGINT shutdown, which are here.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from agent import __version__
from agent.daemon.device_pool import DevicePool, DriverFactory
from agent.daemon.device_state import DeviceConfig, DeviceSnapshot
from agent.daemon.instance_lock import InstanceLock
from agent.daemon.live_status import (
    ErrorLog,
    device_status_message,
)
from agent.daemon.maintenance import Maintenance, MaintenancePolicy
from agent.daemon.outbox_sink import WakingSink
from agent.daemon.reload import enabled_devices, plan_reload
from agent.daemon.reporter import Reporter
from agent.daemon.serve_loop import ServeLoop
from agent.daemon.shutdown import ShutdownSequence
from agent.daemon.status_file import remove_stale_temp_files
from agent.daemon.time_sync import TimeSync
from agent.mqtt.delivery import DeliveryWorker
from agent.mqtt.options import MqttOptions
from agent.mqtt.status import next_boot_counter
from agent.sdnotify import Notifier
from buffer.outbox import Outbox
from config import load_settings
from config.errors import PunchgateError
from config.settings import Settings
from drivers.base import Driver

log = structlog.get_logger("punchgate.daemon")

DELIVERY_STATUS_INTERVAL_S = 60.0  # retained gateway status refresh on the broker


def build_driver(settings: Settings, device: DeviceConfig) -> Driver:
    """``agent.wiring.build_driver``, imported on first use (it pulls in every driver family)."""
    from agent.wiring import build_driver as build

    return build(settings, device)


def outbox_policy(settings: Settings) -> MaintenancePolicy:
    """The maintenance schedule of ``[outbox]``."""
    out = settings.outbox
    return MaintenancePolicy(
        backup_dir=out.backup_dir or settings.agent.state_dir / "backups",
        backup_keep=out.backup_keep,
        backup_interval=out.backup_interval,
        retention_days=out.retention_days,
    )


class Supervisor(ServeLoop):
    """Runs the agent for one ``Settings`` until stopped; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        driver_factory: DriverFactory | None = None,
        loader: Callable[[Path | None], Settings] = load_settings,
        worker_options: dict[str, Any] | None = None,
        mqtt_overrides: dict[str, Any] | None = None,
        maintenance_tick: float = 60.0,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self._factory = driver_factory or build_driver
        self._loader = loader
        self._mqtt_overrides = dict(mqtt_overrides or {})
        self._maintenance_tick = maintenance_tick
        self._requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.errors = ErrorLog()
        self.state = "new"
        self._started = (datetime.now(UTC), time.monotonic())  # kept by reloaded delivery
        self.started_at = self._started[0].isoformat(timespec="seconds")
        self.boot = 0
        self.outbox: Outbox | None = None
        self.delivery: DeliveryWorker | None = None
        self.maintenance: Maintenance | None = None
        self._lock: InstanceLock | None = None
        self._sink = WakingSink(lambda: self.outbox, lambda: self.delivery)
        self.pool = DevicePool(
            self._factory,
            self._sink,
            on_change=self._on_device_change,
            worker_options=worker_options,
        )
        self._time_sync = TimeSync(self.pool)
        self.reporter = Reporter(self)
        self._watchdog_ok = True
        self._signals_installed: dict[int, Any] = {}
        self._stops = 0
        self.log = log.bind(gateway=settings.agent.gateway_id)

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the outbox, start delivery, maintenance and one worker per enabled device."""
        agent = self.settings.agent
        self._lock = InstanceLock(agent.state_dir).acquire()
        remove_stale_temp_files(agent.state_dir)  # left by a power cut mid-write; ours alone
        self.notifier.status("starting: opening the outbox")  # recovery of a large file takes time
        try:
            with self.notifier.extending():  # an upgrade or a recovery grows with the file
                self.outbox = Outbox.open(
                    agent.outbox_path,
                    agent.gateway_id,
                    disk_reserve_bytes=int(self.settings.outbox.disk_reserve_mb * 2**20),
                    backup_dir=outbox_policy(self.settings).backup_dir,
                )
            self.boot = self._next_boot()
            self.delivery = self._build_delivery(self.settings)
            self.maintenance = Maintenance(
                self.outbox,
                outbox_policy(self.settings),
                tick=self._maintenance_tick,
                on_error=self.errors.add,
            ).start()
            self.pool.start(self.settings, enabled_devices(self.settings))
            # Connected only now, with every terminal queued: the first retained gateway
            # status listed "devices": [] for a whole status interval.
            self._start_delivery(self.delivery)
        except BaseException:
            self._abort_start()
            raise
        self.state = "running"
        self.log.info(
            "daemon_started",
            pid=os.getpid(),
            boot=self.boot,
            devices=self.pool.ids,
            broker=self.settings.mqtt.urls,
            version=__version__,
        )
        self.notifier.ready(self.reporter.refresh_status())

    def _next_boot(self) -> int:
        """The boot counter; 0 when it cannot be saved (a full disk must not stop delivery)."""
        try:
            return next_boot_counter(self.settings.agent.state_dir)
        except OSError as exc:
            self.log.warning(
                "boot_counter_not_saved",
                error=str(exc),
                action="free space in the state directory; the gateway status says boot 0",
            )
            return 0

    def _build_delivery(self, settings: Settings) -> DeliveryWorker:
        assert self.outbox is not None
        options = MqttOptions.from_settings(
            settings.mqtt,
            client_id=settings.client_id,
            status_interval=DELIVERY_STATUS_INTERVAL_S,
        )
        if self._mqtt_overrides:
            options = options.with_(**self._mqtt_overrides)
        worker = DeliveryWorker(
            options,
            self.outbox,
            settings.agent.gateway_id,
            settings.agent.site,
            boot=self.boot,
            started=self._started,
        )
        worker.register_command("time-sync", "command-time-sync", self._time_sync.handle)
        return worker

    def _start_delivery(self, worker: DeliveryWorker) -> DeliveryWorker:
        for snapshot in self.pool.snapshots():
            worker.publish_device_status(snapshot.device_id, device_status_message(snapshot))
        return worker.start()

    def _abort_start(self) -> None:
        self.pool.stop_all(2.0)
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.delivery is not None:
            self.delivery.stop(2.0)
        if self.outbox is not None:
            self.outbox.close()
        if self._lock is not None:
            self._lock.release()

    # -- the main loop ------------------------------------------------------------------------

    def run(self, *, install_signals: bool = True) -> int:
        """Start, serve until SIGTERM/SIGINT (or ``request_stop``), shut down; the exit code."""
        if install_signals:
            self._install_signals()
        try:
            self.start()
            self._serve()
        finally:
            if self.state in ("running", "stopping"):
                self.shutdown()
            self._restore_signals()
        return 0

    # -- status -------------------------------------------------------------------------------

    def write_status(self) -> str:
        """Write the status file and send STATUS=; returns the status line."""
        return self.reporter.write_status()

    def _on_device_change(self, snapshot: DeviceSnapshot) -> None:
        self.reporter.device_changed(snapshot)

    # -- reload -------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file; apply it device by device, or keep running the old one."""
        try:
            new = self._loader(self.config_path)
            plan, effective = plan_reload(self.settings, new)
            for device_id in plan.start:
                device = effective.device(device_id)
                assert device is not None
                self._factory(effective, device)  # a driver that cannot be built rejects it all
            # Built (not started) before the running one stops: a CA file that cannot be
            # loaded rejects the reload instead of leaving the daemon without delivery.
            delivery = self._build_delivery(effective) if plan.mqtt_changed else None
        except PunchgateError as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            self.log.error(
                "config_reload_rejected",
                error=str(exc),
                problems=problems,
                action="fix the file (punchgate config check); the running config stays in effect",
            )
            self.errors.add("reload", "; ".join(problems)[:500])
            return False
        for key in plan.restart_required:
            self.log.warning("config_change_needs_restart", key=key, action="systemctl restart")
        timeout = self.settings.agent.shutdown_timeout
        removed = [w.snapshot() for w in self.pool.workers() if w.device_id in plan.removed]
        self.pool.stop(plan.stop, timeout)
        for snapshot in removed:
            # Retained: the backend would otherwise show the last "online" forever.
            gone = replace(snapshot, state="removed", last_error="removed from the configuration")
            self.reporter.publish_device(gone)
            self.reporter.forget(snapshot.device_id)
        self.settings = effective
        if delivery is not None:
            if self.delivery is not None:
                self.delivery.stop(timeout)
            self.delivery = self._start_delivery(delivery)
        if plan.outbox_changed and self.maintenance is not None and self.outbox is not None:
            self.maintenance.policy = outbox_policy(effective)
            self.outbox.disk_reserve_bytes = int(effective.outbox.disk_reserve_mb * 2**20)
        self.pool.start(effective, plan.start)
        self.log.info("config_reloaded", **plan.summary())
        self.write_status()
        return True

    # -- shutdown -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop inputs, flush in-flight punches, publish offline, checkpoint, close the outbox."""
        if self.state not in ("running", "stopping"):
            return
        self.state = "stopping"
        timeout = self.settings.agent.shutdown_timeout
        self.log.info("daemon_stopping", timeout_s=timeout)
        self.notifier.stopping("stopping: flushing the outbox")
        sequence = ShutdownSequence()
        sequence.add("stop inputs", self._stop_inputs, share=0.4)
        sequence.add("flush in-flight", self._flush, share=0.5)
        sequence.add("publish offline", self._stop_delivery, share=0.8)
        sequence.add("close outbox", self._close_outbox)
        started = time.monotonic()
        outcomes = sequence.run(timeout)
        self.state = "stopped"
        self.write_status()
        if self._lock is not None:
            self._lock.release()
        self.log.info(
            "daemon_stopped",
            seconds=round(time.monotonic() - started, 2),
            clean=all(o.ok for o in outcomes),
        )

    def _stop_inputs(self, budget: float) -> str | None:
        deadline = time.monotonic() + budget
        if self.maintenance is not None:
            self.maintenance.stop()
        stuck = [f"device {d}" for d in self.pool.stop_all(budget)]
        if self.maintenance is not None and not self.maintenance.join(deadline - time.monotonic()):
            stuck.append("maintenance")  # mid-backup: SQLite's backup copy is safe to abandon
        return f"still stopping: {', '.join(stuck)}" if stuck else None

    def _flush(self, budget: float) -> str | None:
        if self.delivery is None:
            return "no delivery worker"
        if self.delivery.flush(budget):
            return None
        pending = self.outbox.stats().pending if self.outbox is not None else "?"
        return f"{pending} punch(es) stay in the outbox and are sent after the next start"

    def _stop_delivery(self, budget: float) -> str | None:
        if self.delivery is None:
            return "no delivery worker"
        self.delivery.stop(max(0.5, budget - 1.0))  # stop() may overrun by its join margin
        return None

    def _close_outbox(self, _budget: float) -> str | None:
        if self.outbox is not None:
            self.outbox.close()
        return None
