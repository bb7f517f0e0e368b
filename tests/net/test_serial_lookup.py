"""A serial server given by host name (``socket://``): the lookup is bounded by the timeout."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.errors import DeviceUnavailable
from drivers.netaddr import Resolver
from drivers.serial import SerialOptions, build_serial_driver
from drivers.serial.port import open_port
from tests.drivers.serial.helpers import SerialServer, take
from tests.net.support import BOUND, dead_dns, hosts_file
from tests.support.wait import wait_for


@pytest.fixture
def server() -> Iterator[SerialServer]:
    instance = SerialServer().start()
    try:
        yield instance
    finally:
        instance.stop()


def test_a_serial_server_name_the_dns_never_answers_fails_within_the_timeout() -> None:
    with dead_dns() as dns:
        options = SerialOptions(url="socket://serial1.site.lan:4001", timeout=0.3)
        with pytest.raises(DeviceUnavailable) as caught:
            open_port("gate-2", options, Resolver(dns))
        assert not dns.release.is_set()
    message = str(caught.value)
    assert message.startswith("gate-2 (socket://serial1.site.lan:4001): could not look up")
    assert "within 0.3 s" in message and "/etc/resolv.conf" in message


def test_an_unknown_serial_server_name_says_to_check_the_host() -> None:
    options = SerialOptions(url="rfc2217://nosuch.site.lan:4001", timeout=2)
    with pytest.raises(DeviceUnavailable, match=r"host name 'nosuch\.site\.lan' not found"):
        open_port("gate-2", options, Resolver(hosts_file({})))


def test_each_address_of_a_serial_server_name_is_tried_in_turn(server: SerialServer) -> None:
    def two_addresses(host: str, port: Any, family: int = 0, kind: int = 0) -> list[Any]:
        assert host == "serial1.site.lan"
        # Nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1): refused, next one.
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    options = SerialOptions(url=f"socket://serial1.site.lan:{server.port}", timeout=2)
    port = open_port("gate-2", options, Resolver(two_addresses))
    try:
        assert port.is_open
        server.send(b"ping")
        got = wait_for(lambda: port.read(4) or None, timeout=BOUND, what="bytes from the server")
        assert got == b"ping"
    finally:
        port.close()


def test_a_serial_server_at_localhost_delivers_cards_through_the_real_resolver(
    server: SerialServer,
) -> None:
    options = SerialOptions(
        url=f"socket://localhost:{server.port}", format="wiegand-ascii", reconnect_min=0.05
    )
    driver = build_serial_driver("gate-2", options, ZoneInfo("Europe/Paris"))
    driver.open()
    try:
        server.send(b"0004521837\r\n")
        (punch,) = take(driver.live(5), 1)
        assert punch.card == "0004521837"
    finally:
        driver.close()
