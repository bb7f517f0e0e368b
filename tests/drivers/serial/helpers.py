"""Real serial lines for the tests: a pty pair behind a stable link, and a TCP serial server."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from drivers.base import Punch
from tests.support.wait import wait_for


class PtyLine:
    """A real pty pair; the driver opens ``link`` (like a /dev/serial/by-id/ symlink).

    ``unplug()`` closes the master and removes the link, as pulling a USB adapter does;
    ``plug()`` creates a new pty behind the same link, as plugging it back in does.
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)  # the driver is the only reader of the slave side
        self.master = master
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(name)

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def write(self, data: bytes) -> None:
        assert self.master is not None, "the pty is unplugged"
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def close(self) -> None:
        self.unplug()


class SerialServer:
    """A one-client TCP serial server on 127.0.0.1 (like a serial-to-Ethernet box).

    ``stop()`` drops the client and stops listening; ``start()`` listens again on the same port.
    ``on_connect(conn)`` runs in the server thread for every client that connects.
    """

    def __init__(self, on_connect: Callable[[socket.socket], None] | None = None) -> None:
        self.port = 0
        self.on_connect = on_connect
        self.connections = 0
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> SerialServer:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR on POSIX
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="serial-server", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by stop()
            if self._client is not None:
                self._client.close()  # one client at a time, as real serial servers do
            self._client = conn
            self.connections += 1
            if self.on_connect is not None:
                self.on_connect(conn)

    def has_client(self) -> bool:
        return self._client is not None

    def send(self, data: bytes) -> None:
        wait_for(self.has_client, timeout=5, what="a client of the serial server")
        assert self._client is not None
        self._client.sendall(data)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for sock in (self._client, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._client = None
        self._listener = None


def take(punches: Iterator[Punch], count: int) -> list[Punch]:
    """The first ``count`` punches of a ``live()`` call (fewer if it ended), then close it."""
    try:
        return list(itertools.islice(punches, count))
    finally:
        close = getattr(punches, "close", None)
        if close is not None:
            close()


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The captured log events called ``name``."""
    return [e for e in entries if e["event"] == name]


def in_background(steps: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``steps`` in a thread (the device side); failures are returned for the test to raise."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            steps()
        except BaseException as exc:  # handed to the test thread, which raises it
            failures.append(exc)

    thread = threading.Thread(target=run, name="device-side", daemon=True)
    thread.start()
    return thread, failures
