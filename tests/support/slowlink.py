"""A slow network link for tests: a TCP relay on 127.0.0.1 that throttles one direction.

Between a gateway and its broker, it stalls at first and then forwards the gateway's bytes in
small reads with pauses, like a congested uplink, while the broker's answers pass freely. A
client with more to send than the kernel's socket buffers hold then sees partial writes, which
is what a real cellular or DSL uplink gives a gateway draining a backlog.

``freeze()`` makes it a black hole until ``thaw()``: connections stay open, nothing passes in
either direction, new connections are accepted and go nowhere (a router that died, a mobile
link without coverage: no reset ever reaches the gateway).

Every loop is bounded by ``stop()`` and by socket timeouts.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


def largest_send_buffer(default: int = 4 * 1024 * 1024) -> int:
    """The kernel's largest TCP send buffer in bytes (``tcp_wmem`` max) on Linux."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return default


class SlowLink:
    """Relay ``127.0.0.1:port`` to ``127.0.0.1:target``; the uplink is slow, the downlink not."""

    def __init__(
        self, target_port: int, *, stall: float = 0.3, chunk: int = 16_384, pause: float = 0.001
    ) -> None:
        self.target_port = target_port
        self.stall = stall  # seconds the uplink reads nothing after each connection opens
        self.chunk = chunk
        self.pause = pause
        self.connections = 0
        self._stop = threading.Event()
        self._frozen = threading.Event()
        self._server = socket.socket()
        # A small receive buffer: the TCP window stays small, so the sender's buffer fills up.
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            for sock in (client, upstream):
                sock.settimeout(0.1)
                self._sockets.append(sock)
            self.connections += 1
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def freeze(self) -> None:
        """Forward nothing more, in either direction, and close nothing."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def _pump(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        if slow:
            self._stop.wait(self.stall)
        while not self._stop.is_set():
            if self._frozen.is_set():
                self._stop.wait(0.05)
                continue
            try:
                data = source.recv(self.chunk if slow else 65_536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                self._send_all(sink, data)
            except OSError:
                break
            if slow:
                time.sleep(self.pause)
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send_all(self, sink: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                sent = sink.send(view)
            except TimeoutError:
                continue
            view = view[sent:]

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()
