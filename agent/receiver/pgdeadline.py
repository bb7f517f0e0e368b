"""A client-side deadline for PostgreSQL statements: psycopg waits on the server without one.

A server that keeps the connection open and never answers (hung on its disk, a pooler with no
free backend, a proxy or NAT that lost the flow) left a statement waiting forever: the
receiver stored nothing, said nothing, and could not be stopped. The server-side
``statement_timeout`` needs an answering server; this one shuts the socket down under the
waiting statement, which then fails at once as a lost connection.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any


def cut(conn: Any) -> None:
    """Shut down ``conn``'s socket (never closes its descriptor); the statement waiting on it
    fails at once and the connection counts as lost. Never raises."""
    try:
        fd = conn.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
    except Exception:  # noqa: BLE001 - already closed or broken: nothing waits on it
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)  # acts on the socket itself, shared with libpq's fd
    except OSError:
        pass
    finally:
        sock.close()  # our duplicate only


class Deadline:
    """``with Deadline(conn, seconds) as d:`` cuts ``conn`` if the block outlives ``seconds``;
    ``d.fired`` then says why the statement failed."""

    def __init__(self, conn: Any, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._conn = conn
        self._lock = threading.Lock()
        self._over = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()
        with self._lock:  # a timer firing right now must not cut the next statement
            self._over = True

    def _fire(self) -> None:
        with self._lock:
            if not self._over:
                self.fired = True
                cut(self._conn)
