"""systemd's notify protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) without C dependencies.

A no-op when not started by systemd (``$NOTIFY_SOCKET`` unset), so the daemon runs the same by hand.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

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
