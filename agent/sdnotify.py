"""systemd's notify protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1, EXTEND_TIMEOUT_USEC=)
without C dependencies.

A no-op when not started by systemd (``$NOTIFY_SOCKET`` unset), so the daemon runs the same by hand.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import structlog

log = structlog.get_logger("sdnotify")


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET``; failures are logged once and never raised."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self._address = address or None
        self._warned = False
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = usec.isdecimal() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval: float | None = int(usec) / 1e6 if watchdog_for_us else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines, e.g. ``notify(READY=1, STATUS="3 devices online")``."""
        if self._address is None:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd", error=str(exc), socket=self._address)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    @contextmanager
    def extending(self, step: float = 10.0) -> Iterator[None]:
        """Keep asking systemd for more start-up time (``step`` at a time) until the block ends.

        For work before READY=1 whose length grows with the data (an outbox upgrade or a
        recovery of a large file): without it, ``TimeoutStartSec`` would kill the daemon half
        way, and every restart would begin the same work again.
        """
        if self._address is None:
            yield
            return
        done = threading.Event()

        def extend() -> None:
            # Bounded by the block: ``done`` is set when it ends.
            while True:
                self.notify(EXTEND_TIMEOUT_USEC=int(step * 2 * 1_000_000))
                if done.wait(step):
                    return

        thread = threading.Thread(target=extend, name="sd-extend", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(step)
