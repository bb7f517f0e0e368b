"""Peers that go quiet, on 127.0.0.1 with real sockets: they accept and then never answer.

``SilentListener`` accepts TCP connections and neither reads nor writes: the kernel completes
the handshake, so a client sees a connected socket that never answers (a terminal or broker
that hung, a server behind a proxy with no backend). Its receive buffer is small, so a client
that keeps writing soon finds its send buffer full. Every loop is bounded by ``close()`` and a
socket timeout.
"""

from __future__ import annotations

import socket
import threading


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts and holds connections, silent."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
