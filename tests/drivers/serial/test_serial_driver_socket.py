"""The serial driver through a serial-to-Ethernet server (``socket://``) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.errors import DeviceUnavailable
from drivers.base import VerifyMethod
from drivers.serial import SerialDriver, SerialOptions, build_serial_driver
from tests.drivers.serial.helpers import SerialServer, events, in_background, take
from tests.support.wait import wait_for


@pytest.fixture
def server() -> Iterator[SerialServer]:
    instance = SerialServer().start()
    try:
        yield instance
    finally:
        instance.stop()


def socket_driver(url: str, **options: Any) -> SerialDriver:
    return build_serial_driver(
        "gate-2",
        SerialOptions(
            url=url, format="wiegand-ascii", reconnect_min=0.05, reconnect_max=0.2, **options
        ),
        ZoneInfo("Europe/Paris"),
    )


def test_card_numbers_arrive_through_a_serial_server(server: SerialServer) -> None:
    driver = socket_driver(server.url, cards={"4521837": "1001"})
    driver.open()
    server.send(b"0004521837\r\n00FF")
    server.send(b"AA\r\n")
    first, second = take(driver.live(5), 2)
    assert (first.employee, first.card, first.verify) == ("1001", "0004521837", VerifyMethod.CARD)
    assert (second.employee, second.card) == (None, "00FFAA")
    driver.close()


def test_a_restarted_serial_server_is_reconnected_within_one_live_call(
    server: SerialServer, logs: list[dict[str, Any]]
) -> None:
    driver = socket_driver(server.url)
    driver.open()
    punches = driver.live(10)
    server.send(b"111\r\n")
    assert next(punches).card == "111"
    port = server.port

    def device_side() -> None:
        server.stop()  # the serial server reboots: connection dropped, port closed
        wait_for(
            lambda: len(events(logs, "serial port still unavailable")) >= 2,
            timeout=5,
            what="refused reconnect attempts",
        )
        server.start()
        wait_for(lambda: driver.stats.reconnects == 1, timeout=5, what="the reconnect")
        server.send(b"222\r\n")

    thread, failures = in_background(device_side)
    after = next(punches)
    punches.close()
    thread.join(timeout=5)
    assert failures == []
    assert after.card == "222" and server.port == port and server.connections == 2
    (lost,) = events(logs, "serial port lost; reconnecting in the background")
    assert "disconnected" in lost["error"]
    assert "refused" in events(logs, "serial port still unavailable")[0]["error"]
    assert len(events(logs, "serial port recovered")) == 1


def test_open_explains_a_refused_connection(server: SerialServer) -> None:
    url = server.url
    server.stop()
    driver = socket_driver(url)
    with pytest.raises(DeviceUnavailable) as info:
        driver.open()
    message = str(info.value)
    assert message.startswith(f"gate-2 ({url}): the serial server refused the connection")
    assert "check it is on" in message
