"""Host-name lookups with a deadline: ``getaddrinfo`` has none of its own.

With the site's DNS server unreachable (the uplink is down, /etc/resolv.conf names a dead
router) glibc waits ``timeout:5 attempts:2`` per server and per address family, 20-40 s and
more, and no socket timeout covers it. So a name is looked up in a daemon thread and the caller
waits only until its deadline; an abandoned lookup ends on its own later, and each ``Resolver``
bounds how many of them may be outstanding. An IP literal is converted in the caller's thread
(``AI_NUMERICHOST`` never asks a DNS server). Connections go to the resolved addresses; the host
name is kept for messages and for TLS's server-name check.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr), as getaddrinfo gives
Lookup = Callable[..., Sequence[AddrInfo]]  # socket.getaddrinfo's signature
Connect = Callable[[socket.socket, Any], None]  # connects a socket to one address or raises

WAKE = 0.25  # seconds: the longest one wait lasts, so that a Ctrl-C is seen at once (shared)
_MAX_ADDRESSES = 8  # a name with more addresses: the first ones are tried
LIMIT = 2  # lookups one Resolver lets hang beside the current one (each holds a thread)


class LookupTimeout(socket.gaierror):
    """A host-name lookup got no answer within its deadline: the DNS server is slow or down.

    A ``socket.gaierror`` (``EAI_AGAIN``, glibc's own code for an unanswered lookup): callers
    that handle an unresolvable name handle this one too; ``str()`` says what to do.
    """

    def __init__(self, host: str, timeout: float, *, pending: bool = False) -> None:
        what = (
            f"earlier lookups of {host!r} still have no answer"
            if pending
            else f"could not look up {host!r} within {timeout:g} s"
        )
        super().__init__(
            socket.EAI_AGAIN,
            f"{what}: the gateway's DNS server does not answer (check /etc/resolv.conf and the "
            "uplink, or write the IP address instead of the host name in the config)",
        )
        self.host = host
        self.timeout = timeout


def numeric(host: str, port: int, family: int = 0, kind: int = 0) -> list[AddrInfo] | None:
    """The addresses of an IP literal (no DNS, no thread); None when ``host`` is a name."""
    try:
        infos = socket.getaddrinfo(host, port, family, kind, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None  # a name (or garbage: the real lookup then says what is wrong)
    except UnicodeError:
        return None
    return list(infos)


def _check_name(host: str) -> None:
    """``socket.gaierror`` for a host no DNS name can have (getaddrinfo raised UnicodeError)."""
    try:
        host.encode("idna")  # what socket.getaddrinfo does first
    except UnicodeError as exc:
        reason = str(exc.__cause__ or exc)
        raise socket.gaierror(
            socket.EAI_NONAME,
            f"{host!r} is not a valid host name ({reason}): each dot-separated part of a name "
            "has 1 to 63 characters",
        ) from exc


class Resolver:
    """Looks host names up with a deadline; at most ``limit + 1`` lookup threads at a time.

    Once ``limit + 1`` lookups hang (abandoned at their deadlines), the next one fails at once
    until one of them ends: a dead DNS server costs a bounded number of threads.
    """

    def __init__(self, lookup: Lookup = socket.getaddrinfo, *, limit: int = LIMIT) -> None:
        self._lookup = lookup
        # One slot per lookup thread, freed when the lookup ends (answered or abandoned).
        self._slots = threading.BoundedSemaphore(limit + 1)

    def addresses(
        self, host: str, port: int, timeout: float, *, family: int = 0, kind: int = 0
    ) -> list[AddrInfo]:
        """``getaddrinfo(host, port, family, kind)`` that gives up after ``timeout`` seconds.

        Raises ``LookupTimeout`` at the deadline (or at once while ``limit + 1`` earlier lookups
        still hang) and whatever the lookup raises (``socket.gaierror`` for an unknown name).
        """
        literal = numeric(host, port, family, kind)
        if literal is not None:
            return literal
        _check_name(host)
        if not self._slots.acquire(blocking=False):
            raise LookupTimeout(host, timeout, pending=True)
        outcome: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(list(self._lookup(host, port, family, kind)))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                outcome.append(exc)
            finally:
                self._slots.release()
                done.set()

        try:
            threading.Thread(target=run, name=f"lookup {host}", daemon=True).start()
        except BaseException:  # no thread (RuntimeError at the process's limit): free the slot
            self._slots.release()
            raise
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / WAKE) + 2):  # bounded by the deadline
            remaining = deadline - time.monotonic()
            if done.wait(max(0.0, min(remaining, WAKE))) or remaining <= 0:
                break
        if not done.is_set():
            raise LookupTimeout(host, timeout)
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return list(result)


def create_connection(
    host: str,
    port: int,
    timeout: float,
    *,
    resolver: Resolver | None = None,
    connect: Connect | None = None,
) -> socket.socket:
    """``socket.create_connection((host, port), timeout)`` with the lookup bounded by ``timeout``
    too; every address is tried in turn (IPv6 and IPv4), each connect with ``timeout``.

    ``connect(sock, address)`` replaces the plain blocking ``sock.connect`` (e.g. with one
    that waits in slices); it raises ``OSError`` for an address that does not answer.
    """
    infos = (resolver or Resolver()).addresses(host, port, timeout, kind=socket.SOCK_STREAM)
    last: OSError = OSError(errno.EADDRNOTAVAIL, f"no address for {host}")
    for family, kind, proto, _name, address in infos[:_MAX_ADDRESSES]:
        sock = socket.socket(family, kind, proto)
        try:
            if connect is None:
                sock.settimeout(timeout)
                sock.connect(address)
            else:
                connect(sock, address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last
