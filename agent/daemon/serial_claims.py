"""Which configured device reads which terminal: one terminal, one device id."""

from __future__ import annotations

import threading


class SerialClaims:
    """Serial numbers claimed by device ids; the first device to report a serial keeps it.

    Two config entries with one address (a copied ``[[devices]]`` table whose host was never
    changed) both read the same terminal: its punches were split between the two ids at
    random, and the terminal that the second entry was meant for was never read, with both
    shown online. Thread-safe: every device worker claims on its own thread.
    """

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def claim(self, device_id: str, serial: str) -> str | None:
        """Claim ``serial`` for ``device_id``; the other device that holds it, else None."""
        with self._lock:
            owner = self._owners.setdefault(serial, device_id)
            if owner != device_id:
                return owner
            for other, holder in list(self._owners.items()):
                if holder == device_id and other != serial:
                    del self._owners[other]  # a swap accepted: the old serial is free again
            return None

    def release(self, device_id: str) -> None:
        """The device's worker stopped: what it claimed is free."""
        with self._lock:
            for serial, holder in list(self._owners.items()):
                if holder == device_id:
                    del self._owners[serial]
