"""How often the daemon pings systemd's watchdog: never a spin, and around a slow reload."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from agent.localbroker import LocalMosquitto
from agent.sdnotify import Notifier
from config import load_settings
from config.settings import Settings
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import running, write_config, zk_device
from tests.daemon.process import NotifySocket
from tests.support.wait import wait_for


def _pings(notify: NotifySocket) -> int:
    return sum(1 for m in notify.drain() if m == b"WATCHDOG=1")


def test_a_tiny_watchdog_interval_does_not_make_the_main_loop_spin(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    """WATCHDOG_USEC=1 (a typo in a drop-in) pinged every half microsecond, a core at 100 %."""
    config = write_config(
        tmp_path / "pg.toml", tmp_path / "state", broker.url, [zk_device("a-1", poll_interval=1)]
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1"})
    try:
        with running(config, FakeFleet().factory, notifier=notifier):
            wait_for(lambda: _pings(notify) >= 3, timeout=10, what="watchdog pings")
            before, started = _pings(notify), time.monotonic()
            wait_for(lambda: time.monotonic() - started >= 0.5, timeout=2, what="half a second")
            # At most one ping per 10 ms (MIN_PING_S), with room for a slow machine's bunching.
            assert _pings(notify) - before <= 100
    finally:
        notify.close()


def test_the_watchdog_is_pinged_when_a_slow_reload_begins(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    """A reload blocks the main loop (up to twice shutdown_timeout): the last ping before it
    must be fresh, not up to half a WatchdogSec old."""
    config = write_config(
        tmp_path / "pg.toml", tmp_path / "state", broker.url, [zk_device("a-1", poll_interval=1)]
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    # 20 s: the regular pings come every 10 s, so a ping seen during the reload is the new one.
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "20000000"})
    reading = threading.Event()
    release = threading.Event()

    def loader(path: Path | None) -> Settings:
        if any(m.startswith(b"READY=1") for m in notify.drain()):  # the reload, not the start
            reading.set()
            release.wait(10)
        return load_settings(path)

    try:
        with running(config, FakeFleet().factory, notifier=notifier, loader=loader) as handle:
            sup = handle.supervisor
            wait_for(lambda: sup.state == "running", timeout=10, what="the daemon running")
            wait_for(lambda: _pings(notify) == 1, timeout=5, what="the first ping")
            sup.request_reload()
            assert reading.wait(10)
            # Pinged as the reload began, 10 s before the next one was due (the reload still
            # blocks the loop here: no other ping can come meanwhile).
            wait_for(lambda: _pings(notify) == 2, timeout=5, what="a ping as the reload began")
            release.set()
            wait_for(lambda: _pings(notify) == 3, timeout=5, what="a ping after the reload")
    finally:
        release.set()
        notify.close()
