"""A resolver that never answers until released: the one boundary these tests replace."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

BOUND = 10.0  # seconds: the longest a test waits for anything


class DeadDns:
    """A ``getaddrinfo`` stand-in that blocks (bounded) like a lookup to a dead DNS server."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []
        self.finished = threading.Semaphore(0)

    def __call__(self, host: str, port: Any, *args: Any) -> list[Any]:
        self.calls.append(host)
        try:
            self.release.wait(BOUND)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        finally:
            self.finished.release()


@contextmanager
def dead_dns() -> Iterator[DeadDns]:
    """A ``DeadDns`` whose blocked lookups are all released (and ended) at the end of the test."""
    dns = DeadDns()
    try:
        yield dns
    finally:
        dns.release.set()
        for _ in dns.calls:
            assert dns.finished.acquire(timeout=BOUND)


def hosts_file(names: dict[str, str]) -> Any:
    """A ``getaddrinfo`` that knows ``names`` (name -> IP literal), like an /etc/hosts entry."""

    def lookup(host: str, port: Any, family: int = 0, kind: int = 0, *rest: Any) -> list[Any]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return socket.getaddrinfo(names[host], port, family, kind, 0, socket.AI_NUMERICHOST)

    return lookup
