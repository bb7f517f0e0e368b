"""The receiver's PostgreSQL host names are looked up within connect_timeout (pghosts.py)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from agent.receiver.errors import StoreError
from agent.receiver.pghosts import pinned
from agent.receiver.pgstore import PostgresStore
from drivers.netaddr import Resolver
from tests.net.support import BOUND, dead_dns, hosts_file
from tests.support.postgres import LocalPostgres


class _Recording:
    """The real ``getaddrinfo``, recording the names asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, *rest: Any) -> Any:
        self.calls.append(host)
        return socket.getaddrinfo(host, *rest)


def _named(pg_url: str, host: str) -> str:
    return pg_url.replace("@127.0.0.1:", f"@{host}:", 1)


def _count(store: PostgresStore) -> int:
    try:
        return store.count()
    finally:
        store.close()


def test_a_database_host_the_dns_never_answers_fails_within_connect_timeout_saying_what_to_do(
    pg_url: str,
) -> None:
    url = _named(pg_url, "db.site.lan")
    with dead_dns() as dns:
        began = time.monotonic()
        with pytest.raises(StoreError) as raised:
            PostgresStore(url, connect_timeout=2, resolver=Resolver(dns))
        waited = time.monotonic() - began
        assert not dns.release.is_set()  # given up on while the lookup still hangs
    assert waited < BOUND
    assert dns.calls == ["db.site.lan"]
    message = str(raised.value)
    assert message.startswith("cannot open the receiver database: the DNS server gave no answer")
    assert "'db.site.lan'" in message and "within 2s" in message, message
    assert "/etc/resolv.conf" in message and "hostaddr=<ip>" in message, message


def test_the_receiver_database_opens_by_host_name_localhost(pg_url: str) -> None:
    lookup = _Recording()
    store = PostgresStore(_named(pg_url, "localhost"), resolver=Resolver(lookup))
    assert _count(store) == 0
    assert lookup.calls == ["localhost"]


def test_a_reconnect_while_the_dns_is_dead_fails_in_time_and_the_next_one_succeeds(
    pg_url: str,
) -> None:
    answering = hosts_file({"db.site.lan": "127.0.0.1"})
    with dead_dns() as dns:
        dead = [False]

        def lookup(host: str, *rest: Any) -> Any:
            return dns(host, *rest) if dead[0] else answering(host, *rest)

        store = PostgresStore(
            _named(pg_url, "db.site.lan"), connect_timeout=2, resolver=Resolver(lookup)
        )
        try:
            assert store.count() == 0
            store._conn.close()  # the server ended the session (a restart, a reaper)
            dead[0] = True
            with pytest.raises(StoreError, match="cannot reconnect to PostgreSQL: the DNS server"):
                store.count()
            dead[0] = False
            assert store.count() == 0  # the DNS is back: the next batch reconnects
        finally:
            store.close()


def test_a_name_with_several_addresses_is_tried_at_each_like_libpq_does(pg_url: str) -> None:
    # 127.0.0.2 is loopback with nothing listening on the port: refused, then the next one.
    def lookup(host: str, port: Any, family: int = 0, kind: int = 0, *rest: Any) -> Any:
        assert host == "db.site.lan"
        found = [socket.getaddrinfo(ip, port, family, kind)[0] for ip in ("127.0.0.2", "127.0.0.1")]
        return found * 2  # duplicates are tried once

    assert _count(PostgresStore(_named(pg_url, "db.site.lan"), resolver=Resolver(lookup))) == 0


def test_a_multi_host_url_skips_a_host_the_dns_never_answers(
    postgres: LocalPostgres, pg_url: str
) -> None:
    port = postgres.port
    url = _named(pg_url, f"db.site.lan:{port + 1},localhost")
    with dead_dns() as dns:
        names = hosts_file({"localhost": "127.0.0.1"})

        def lookup(host: str, *rest: Any) -> Any:
            return names(host, *rest) if host == "localhost" else dns(host, *rest)

        store = PostgresStore(url, connect_timeout=2, resolver=Resolver(lookup))
        assert _count(store) == 0
    assert dns.calls == ["db.site.lan"]


def test_an_unknown_database_host_name_says_to_check_it(pg_url: str) -> None:
    with pytest.raises(StoreError) as raised:
        PostgresStore(_named(pg_url, "db.site.lan"), resolver=Resolver(hosts_file({})))
    message = str(raised.value)
    assert message.startswith(
        "cannot open the receiver database: cannot look up 'db.site.lan': Name or service not "
        "known (a host in postgresql://"
    ), message
    assert message.endswith("check the host name in the URL"), message


def test_a_port_that_is_no_number_is_left_for_libpq_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGHOSTADDR", raising=False)
    resolver = Resolver(hosts_file({"db.lan": "10.0.0.5"}))
    pins = pinned({"host": "db.lan", "port": "5432x"}, 2, resolver)
    assert pins == {"host": "db.lan", "hostaddr": "10.0.0.5"}


def test_ip_literal_and_socket_directory_urls_look_nothing_up(
    postgres: LocalPostgres, pg_url: str
) -> None:
    lookup = _Recording()
    assert _count(PostgresStore(pg_url, resolver=Resolver(lookup))) == 0
    socket_url = pg_url.replace("@127.0.0.1:", "@:", 1) + f"&host={postgres.root}"
    assert _count(PostgresStore(socket_url, resolver=Resolver(lookup))) == 0
    assert lookup.calls == []


def test_a_socket_directory_beside_a_name_in_one_url_still_works(
    postgres: LocalPostgres, pg_url: str
) -> None:
    lookup = _Recording()
    url = pg_url.replace("@127.0.0.1:", "@:", 1) + f"&host={postgres.root},localhost"
    assert _count(PostgresStore(url, resolver=Resolver(lookup))) == 0
    assert lookup.calls == ["localhost"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"host": "127.0.0.1"}, {}),
        ({"host": "::1"}, {}),
        ({"host": "/run/postgresql"}, {}),
        ({"host": "db.lan", "hostaddr": "10.0.0.5"}, {}),  # the user pinned it already
        ({"host": "a.lan,b.lan", "port": "1,2,3"}, {}),  # psycopg says what is wrong
        ({"host": "db.lan"}, {"host": "db.lan", "hostaddr": "10.0.0.5"}),
        ({"host": "db.lan", "port": "6432"}, {"host": "db.lan", "hostaddr": "10.0.0.5"}),
        (
            {"host": "db.lan,/run/pg,10.0.0.9", "port": "1,2,3"},
            {"host": "db.lan,/run/pg,10.0.0.9", "hostaddr": "10.0.0.5,,10.0.0.9", "port": "1,2,3"},
        ),
    ],
)
def test_only_host_names_are_pinned_and_the_name_is_kept_for_tls_and_pgpass(
    params: dict[str, str], expected: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGHOST", "PGHOSTADDR", "PGPORT"):
        monkeypatch.delenv(name, raising=False)
    resolver = Resolver(hosts_file({"db.lan": "10.0.0.5"}))
    assert pinned(params, 2, resolver) == expected


def test_a_host_name_from_pghost_is_pinned_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db.lan")
    monkeypatch.delenv("PGHOSTADDR", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    resolver = Resolver(hosts_file({"db.lan": "10.0.0.5"}))
    assert pinned({"dbname": "hr"}, 2, resolver) == {"host": "db.lan", "hostaddr": "10.0.0.5"}
