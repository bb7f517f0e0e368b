"""Waits on a terminal that a Ctrl-C always ends at once, and cleanups that never wait long.

CPython runs a signal's C handler at once but raises ``KeyboardInterrupt`` only when the main
thread next runs bytecode. A SIGINT landing between the last such check and the start of a
blocking call (a process preempted there on a loaded gateway) does not interrupt that call: with
one 20 s ``poll()`` the technician's Ctrl-C went unanswered for up to the device's timeout. So no
wait on a terminal blocks longer than ``WAKE`` in one system call; the deadline is kept across
the slices.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
import time
from typing import Any

from drivers.netaddr import WAKE, Resolver, create_connection

BRIEF = 1.0  # seconds: a cleanup request (FREE_DATA, ENABLE_DEVICE, EXIT) on the way out


def interrupted() -> bool:
    """True inside a ``finally``/``except`` left by Ctrl-C (or SystemExit), not by an error.

    A cleanup that talks to the terminal then tries only briefly: the terminal may be what hung,
    and the technician asked to stop now.
    """
    exc = sys.exc_info()[1]
    return exc is not None and not isinstance(exc, Exception)


def connect_tcp(
    host: str, port: int, timeout: float, resolver: Resolver | None = None
) -> socket.socket:
    """``socket.create_connection(..., timeout)``, but waiting in ``WAKE`` slices.

    A host name's lookup is bounded by ``timeout`` too (``LookupTimeout``, a ``gaierror``).
    Errors are the same ``OSError`` subclasses (``TimeoutError`` at the deadline, which covers
    every address tried).
    """
    deadline: list[float] = []  # set once the lookup is done: it covers every address

    def sliced(sock: socket.socket, address: tuple[Any, ...]) -> None:
        if not deadline:
            deadline.append(time.monotonic() + timeout)
        _connect(sock, address, deadline[0])
        sock.settimeout(timeout)

    return create_connection(host, port, timeout, resolver=resolver, connect=sliced)


def _connect(sock: socket.socket, address: tuple[Any, ...], deadline: float) -> None:
    sock.setblocking(False)
    code = sock.connect_ex(address)
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    for _ in range(int((deadline - time.monotonic()) / WAKE) + 2):  # bounded by the deadline
        if code != errno.EINPROGRESS:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(errno.ETIMEDOUT, "timed out")
        if poller.poll(max(1, int(min(remaining, WAKE) * 1000))):
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code == errno.EINPROGRESS:
        raise TimeoutError(errno.ETIMEDOUT, "timed out")
    if code:
        raise OSError(code, os.strerror(code))  # the errno's subclass: ConnectionRefusedError...
