"""Peers that go quiet, on 127.0.0.1 with real sockets: they accept and then never answer.

``SilentListener`` accepts TCP connections and neither reads nor writes: the kernel completes
the handshake, so a client sees a connected socket that never answers (a terminal or broker
that hung, a server behind a proxy with no backend). Its receive buffer is small, so a client
that keeps writing soon finds its send buffer full. ``Relay`` passes traffic to a real peer
until ``freeze()``. Every loop is bounded by ``close()`` and a socket timeout.
"""

from __future__ import annotations

import select
import socket
import threading


class _Listener:
    """Accepts on 127.0.0.1 in a thread of its own and hands each connection to ``_take``."""

    def __init__(self, receive_buffer: int | None = None) -> None:
        self._stop = threading.Event()
        self._server = socket.socket()
        if receive_buffer is not None:  # inherited by accepted sockets: a small TCP window
            self._server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)
            self._take(conn)

    def _take(self, conn: socket.socket) -> None:
        """What to do with a new connection (held as it is by default)."""

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for thread in self._threads:
            thread.join(2)
        for conn in self.accepted:
            conn.close()


class SilentListener(_Listener):
    """A TCP listener on 127.0.0.1 that accepts and holds connections, silent."""

    def __init__(self) -> None:
        super().__init__(receive_buffer=4096)

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Relay(_Listener):
    """Relays ``127.0.0.1:port`` to ``127.0.0.1:target``; ``freeze()`` makes the path silent.

    Once ``freeze()`` returns, not one more byte passes either way and nothing is closed: a NAT
    that forgot the flow, a router that died (no reset ever reaches either side). Unlike a
    relay that checks its flag between blocking reads, nothing already being read slips
    through afterwards, so tests need no grace period.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self._frozen = False
        super().__init__()

    def freeze(self) -> None:
        with self._lock:
            self._frozen = True

    def thaw(self) -> None:
        with self._lock:
            self._frozen = False

    def _take(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        self.accepted.append(upstream)
        thread = threading.Thread(target=self._pump, args=(conn, upstream), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self._stop.is_set():
            readable, _, _ = select.select(list(peers), [], [], 0.05)
            with self._lock:
                if self._frozen:
                    continue
                for source in readable:
                    try:
                        data = source.recv(65_536)
                        if not data:
                            return
                        peers[source].settimeout(5)
                        peers[source].sendall(data)
                    except OSError:
                        return

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
