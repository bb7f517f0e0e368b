"""The daemon's main thread: requests from signals, status and watchdog timers, as one mixin.

Signal handlers only put a word on a queue (``SimpleQueue.put`` is reentrant); the loop takes
the words and the timers' turns: it writes the live status, publishes the devices that changed,
and sends systemd WATCHDOG=1 only while every worker thread is alive and within its heartbeat
bound.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from types import FrameType
from typing import Any

from agent.daemon.device_pool import DevicePool
from agent.daemon.maintenance import Maintenance
from agent.daemon.reporter import Reporter
from agent.mqtt.delivery import DeliveryWorker
from agent.sdnotify import Notifier
from config.settings import Settings

MAX_TICK_S = 5.0  # the main loop looks at timers at least this often
# Watchdog pings at half of WatchdogSec, but never more often than this: a tiny WATCHDOG_USEC
# (a typo in a drop-in) made the main loop spin, pinging every half microsecond.
MIN_PING_S = 0.01
MAX_REQUESTS_PER_TICK = 10_000  # requests taken in one go (signals queue one word each)


class ServeLoop:
    """Mixed into ``Supervisor``, which provides the attributes declared here."""

    settings: Settings
    notifier: Notifier
    state: str
    pool: DevicePool
    delivery: DeliveryWorker | None
    maintenance: Maintenance | None
    reporter: Reporter
    log: Any
    _requests: queue.SimpleQueue[str]
    _signals_installed: dict[int, Any]
    _stops: int
    _watchdog_ok: bool

    def reload(self) -> bool:
        raise NotImplementedError  # Supervisor.reload

    def write_status(self) -> str:
        raise NotImplementedError  # Supervisor.write_status

    def request_stop(self) -> None:
        """Ask the main loop to shut down (thread-safe, signal-safe)."""
        self._requests.put("stop")

    def request_reload(self) -> None:
        """Ask the main loop to reload the config file (thread-safe, signal-safe)."""
        self._requests.put("reload")

    def _serve(self) -> None:
        interval = self.settings.agent.status_interval
        next_status = time.monotonic() + interval
        next_ping = time.monotonic()
        while True:
            now = time.monotonic()
            wd = self.notifier.watchdog_interval
            due = [next_status] + ([next_ping] if wd else [])
            timeout = max(0.0, min(min(due) - now, MAX_TICK_S))
            requests = self._next_requests(timeout)
            if "stop" in requests:
                return  # before any reload queued with it
            if "reload" in requests:
                if wd:  # a reload blocks this loop (up to 2 x shutdown_timeout): ping first
                    self._watchdog()
                if self.reload():
                    # The status file now promises the new interval: keep it from the reload on.
                    next_status = min(
                        next_status, time.monotonic() + self.settings.agent.status_interval
                    )
                next_ping = time.monotonic()  # and again right after it
            now = time.monotonic()
            if wd and now >= next_ping:
                self._watchdog()
                next_ping = now + max(wd / 2, MIN_PING_S)
            if now >= next_status:
                self.write_status()
                self.reporter.publish_changed_devices()
                interval = self.settings.agent.status_interval
                next_status = now + interval

    def _next_requests(self, timeout: float) -> set[str]:
        """The requests that arrived within ``timeout``; a SIGHUP storm is one reload."""
        try:
            requests = {self._requests.get(timeout=timeout)}
        except queue.Empty:
            return set()
        for _ in range(MAX_REQUESTS_PER_TICK):
            try:
                requests.add(self._requests.get_nowait())
            except queue.Empty:
                break
        return requests

    # -- signals ------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # tests run the supervisor in a thread and call request_* instead
        for sig, handler in (
            (signal.SIGTERM, self._on_stop_signal),
            (signal.SIGINT, self._on_stop_signal),
            (signal.SIGHUP, self._on_reload_signal),
        ):
            self._signals_installed[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        for sig, previous in self._signals_installed.items():
            signal.signal(sig, previous)
        self._signals_installed.clear()

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stops += 1
        if self._stops > 1 and self.state == "stopping":
            os._exit(128 + signum)  # asked twice: the operator wants out now
        self._requests.put("stop")

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._requests.put("reload")

    # -- health -------------------------------------------------------------------------------

    def unhealthy(self) -> list[str]:
        """Threads that died or hang (devices merely offline are healthy)."""
        bad = [f"device {d}" for d in self.pool.unhealthy()]
        if self.maintenance is not None and not self.maintenance.healthy():
            bad.append("maintenance")
        if self.delivery is not None and not self.delivery.alive:
            bad.append("delivery")
        return bad

    def _watchdog(self) -> None:
        bad = self.unhealthy()
        if not bad:
            self.notifier.watchdog()
            if not self._watchdog_ok:
                self.log.info("daemon_healthy_again")
            self._watchdog_ok = True
        elif self._watchdog_ok:
            self._watchdog_ok = False
            self.log.error(
                "daemon_unhealthy",
                workers=bad,
                action="WATCHDOG=1 withheld: systemd restarts the service after WatchdogSec",
            )
