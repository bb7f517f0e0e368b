"""drivers.netaddr: a host-name lookup never outlives its deadline; literals cost no thread."""

from __future__ import annotations

import socket
import threading

import pytest

from drivers.netaddr import LookupTimeout, Resolver, create_connection
from tests.net.support import BOUND, dead_dns, hosts_file


def _lookup_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lookup ")]


def test_a_lookup_the_dns_server_never_answers_fails_at_the_deadline_saying_what_to_do() -> None:
    with dead_dns() as dns:
        with pytest.raises(LookupTimeout) as caught:
            Resolver(dns).addresses("clock1.site.lan", 4370, 0.3)
        assert not dns.release.is_set()  # the caller is back while the lookup still hangs
    message = str(caught.value.strerror)
    assert "could not look up 'clock1.site.lan' within 0.3 s" in message
    assert "/etc/resolv.conf" in message and "IP address" in message
    assert isinstance(caught.value, socket.gaierror)  # existing "cannot resolve" handlers apply


def test_an_ip_literal_is_converted_without_a_lookup_or_a_thread() -> None:
    with dead_dns() as dns:
        before = threading.active_count()
        resolver = Resolver(dns)
        v4 = resolver.addresses("10.0.0.20", 4370, 0.3, kind=socket.SOCK_STREAM)
        v6 = resolver.addresses("::1", 4370, 0.3, kind=socket.SOCK_STREAM)
        assert dns.calls == []
        assert threading.active_count() == before and not _lookup_threads()
    assert [i[4][:2] for i in v4] == [("10.0.0.20", 4370)]
    assert v6[0][0] == socket.AF_INET6 and v6[0][4][:2] == ("::1", 4370)


def test_abandoned_lookups_are_bounded_and_later_ones_fail_at_once() -> None:
    with dead_dns() as dns:
        resolver = Resolver(dns, limit=2)
        for _ in range(3):  # one running lookup plus two abandoned ones
            with pytest.raises(LookupTimeout, match="within"):
                resolver.addresses("clock1.site.lan", 4370, 0.05)
        with pytest.raises(LookupTimeout, match=r"earlier lookups of 'clock1\.site\.lan'"):
            resolver.addresses("clock1.site.lan", 4370, 5.0)  # no wait, no new thread
        assert len(dns.calls) == 3
    # Once the DNS server answers again, the slots are free again.
    ok = Resolver(hosts_file({"clock1.site.lan": "127.0.0.1"}), limit=2)
    assert ok.addresses("clock1.site.lan", 4370, BOUND)[0][4][0] == "127.0.0.1"


def test_an_unknown_name_raises_the_lookups_own_error() -> None:
    with pytest.raises(socket.gaierror) as caught:
        Resolver(hosts_file({})).addresses("nosuch.site.lan", 80, BOUND)
    assert not isinstance(caught.value, LookupTimeout)
    assert caught.value.errno == socket.EAI_NONAME


def test_localhost_resolves_with_the_real_resolver_and_connects() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        # localhost may list ::1 first, where nothing listens: the next address is tried.
        with create_connection("localhost", port, BOUND) as sock:
            assert sock.getpeername()[:2] == ("127.0.0.1", port)
            peer, _ = server.accept()
            peer.close()


def test_create_connection_tries_every_address_and_raises_the_last_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        create_connection("127.0.0.1", port, BOUND)
