"""The serial driver on a real pty: reads what the "device" writes, rides out unplug/replug."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from drivers.base import PunchState
from drivers.serial import SerialDriver, SerialOptions, build_serial_driver
from drivers.serial.parsers import em4100_frame
from tests.drivers.serial.helpers import PtyLine, events, in_background, take
from tests.support.wait import wait_for

CLOCK_PATTERN = r"^(?P<employee>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$"


def pty_driver(pty: PtyLine, **options: Any) -> SerialDriver:
    return build_serial_driver(
        "dock-1",
        SerialOptions(url=str(pty.link), reconnect_min=0.05, reconnect_max=0.2, **options),
        ZoneInfo("UTC"),
    )


def test_driver_reads_lines_written_to_a_real_pty(pty: PtyLine) -> None:
    driver = pty_driver(pty, baudrate=19200, parity="E", bytesize=7, pattern=CLOCK_PATTERN)
    driver.open()
    pty.write(b"1001,2024-05-01 08:00:00,IN\r\n1001,2024-05-01 1")
    pty.write(b"7:00:00,OUT\r\n")
    first, second = take(driver.live(5), 2)
    assert (first.employee, first.state) == ("1001", PunchState.IN)
    assert (second.employee, second.state) == ("1001", PunchState.OUT)
    driver.close()


def test_unplugged_adapter_is_logged_once_and_reconnected_within_one_live_call(
    pty: PtyLine, logs: list[dict[str, Any]]
) -> None:
    driver = pty_driver(pty, format="em4100", cards={"1122334455": "1001"})
    driver.open()
    punches = driver.live(10)
    pty.write(em4100_frame("1122334455"))
    assert next(punches).employee == "1001"

    def device_side() -> None:
        pty.unplug()
        wait_for(lambda: driver.stats.disconnects >= 1, timeout=5, what="the loss noticed")
        # Stay unplugged for a few reconnect attempts before coming back.
        wait_for(
            lambda: len(events(logs, "serial port still unavailable")) >= 3,
            timeout=5,
            what="failed reconnect attempts",
        )
        pty.plug()
        wait_for(lambda: driver.stats.reconnects == 1, timeout=5, what="the reconnect")
        pty.write(em4100_frame("6677889900"))

    thread, failures = in_background(device_side)
    after = next(punches)  # the same live() call, across the unplug
    punches.close()
    thread.join(timeout=5)
    assert failures == []
    assert after.card == "6677889900" and after.employee is None
    assert len(events(logs, "serial port lost; reconnecting in the background")) == 1
    assert {e["log_level"] for e in events(logs, "serial port still unavailable")} == {"debug"}
    (recovered,) = events(logs, "serial port recovered")
    assert recovered["after_s"] >= 0
    assert driver.connected and driver.stats.reconnects == 1


def test_live_on_a_missing_port_retries_quietly_then_connects_when_it_appears(
    pty: PtyLine, logs: list[dict[str, Any]]
) -> None:
    driver = pty_driver(pty, format="wiegand-ascii")
    pty.unplug()
    assert list(driver.live(0.5)) == []  # several attempts, no exception
    assert len(events(logs, "serial port unavailable; retrying")) == 1
    pty.plug()
    punches = driver.live(10)
    thread, failures = in_background(
        lambda: (
            wait_for(lambda: driver.connected, timeout=5, what="the port opened"),
            pty.write(b"4521837\r\n"),
        )
    )
    (punch,) = take(punches, 1)
    thread.join(timeout=5)
    assert failures == [] and punch.card == "4521837"
