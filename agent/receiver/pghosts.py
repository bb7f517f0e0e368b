"""PostgreSQL host names looked up with a deadline, then pinned with libpq's ``hostaddr``.

psycopg 3 looks each ``host`` up with a plain ``getaddrinfo`` before libpq connects, and
``connect_timeout`` does not cover it: with the DNS server dead the receiver hung at start and
at every reconnect. Here each name is looked up through ``drivers.netaddr.Resolver`` and passed
on as ``host=<name>`` plus ``hostaddr=<ip>``: psycopg then skips its own lookup, while TLS
(``sslmode=verify-full``) and ``.pgpass`` still use the name. Unix-socket directories, IP
literals and a ``hostaddr`` already given are left exactly as written.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from drivers.netaddr import LookupTimeout, Resolver

DEFAULT_PORT = "5432"
_MAX_ADDRESSES = 8  # per name, as drivers.netaddr tries at most


def _param(params: Mapping[str, Any], name: str, envvar: str) -> str:
    """A connection parameter as libpq sees it: the conninfo's value, else its PG* variable."""
    value = params.get(name)
    return str(value) if value is not None else os.environ.get(envvar, "")


def _is_name(host: str) -> bool:
    """Whether libpq would look ``host`` up in the DNS (not a socket directory, not an IP)."""
    if not host or host.startswith(("/", "@")) or host[1:2] == ":":  # '@': abstract socket
        return False
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return True
    return False


def pinned(params: Mapping[str, Any], timeout: float, resolver: Resolver) -> dict[str, str]:
    """``host``, ``hostaddr`` (and ``port``) to pass to ``psycopg.connect`` so that it looks no
    name up; ``{}`` when nothing needs a lookup or the hosts and ports do not match (psycopg
    then says so).

    Each name is tried in turn with ``timeout``; one with several addresses becomes one entry
    per address (libpq tries them in that order). A name that fails is left out, as psycopg
    does; when none is left, its lookup error is raised (``LookupTimeout`` for a dead DNS
    server, ``socket.gaierror`` for an unknown name).
    """
    if _param(params, "hostaddr", "PGHOSTADDR"):
        return {}  # already pinned by the user
    hosts = _param(params, "host", "PGHOST").split(",")
    if not any(_is_name(host) for host in hosts):
        return {}
    port_text = _param(params, "port", "PGPORT")
    ports = port_text.split(",") if port_text else []
    if 1 < len(ports) != len(hosts):
        return {}
    entries: list[tuple[str, str, str]] = []  # (host, hostaddr, port)
    failure: socket.gaierror | None = None
    for index, host in enumerate(hosts):
        port = ports[index] if len(ports) > 1 else (ports[0] if ports else "")
        if not _is_name(host):
            # A socket directory stays as it is; an IP literal is its own address.
            entries.append((host, host if host and not host.startswith(("/", "@")) else "", port))
            continue
        # The port only shapes the answer's socket addresses; one that is no number is
        # passed on as written, for libpq to refuse.
        number = int(port) if port.isdecimal() else int(DEFAULT_PORT)
        try:
            infos = resolver.addresses(host, number, timeout, kind=socket.SOCK_STREAM)
        except LookupTimeout as exc:
            failure = exc
            continue
        except socket.gaierror as exc:
            failure = socket.gaierror(exc.errno, f"{host!r}: {exc.strerror}")
            continue
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))[:_MAX_ADDRESSES]
        entries += [(host, address, port) for address in found]
    if not entries and failure is not None:
        raise failure
    out = {
        "host": ",".join(host for host, _a, _p in entries),
        "hostaddr": ",".join(address for _h, address, _p in entries),
    }
    if len(ports) > 1:
        out["port"] = ",".join(port for _h, _a, port in entries)
    return out
