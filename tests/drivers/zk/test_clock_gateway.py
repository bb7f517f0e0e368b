"""A gateway clock that is not set (a Raspberry Pi booted in 1970, before NTP) is never pushed
onto a terminal: the terminal's battery-backed clock is the better one then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from config.errors import UsageError
from drivers.base import Suspect
from drivers.zk import ZkDriver, ZkOptions
from tests.drivers.zk.driver_support import TZ, local_now, simulator

BOOTED_IN_1970 = datetime(1970, 1, 1, 0, 3, 12, tzinfo=UTC)


def unset_driver(port: int, **options: object) -> ZkDriver:
    """A driver whose gateway clock reads 1970 (no RTC, NTP not answered yet)."""
    opts = ZkOptions(host="127.0.0.1", port=port, timeout=2.0, **options)  # type: ignore[arg-type]
    return ZkDriver("lobby-1", opts, TZ, now=lambda: BOOTED_IN_1970)


def assert_terminal_still_right(terminal_time: datetime) -> None:
    assert abs(terminal_time - local_now()) < timedelta(seconds=5), terminal_time


def test_clock_sync_leaves_a_right_terminal_alone_while_the_gateway_clock_is_unset() -> None:
    with simulator(users=2, records=3) as sim:
        driver = unset_driver(sim.port, clock_sync=True, max_drift=60)
        driver.open()
        with capture_logs() as logs:
            punches, _mark = driver.read_new(None)
        driver.close()
        assert_terminal_still_right(sim.clock)
    assert len(punches) == 3  # the punches are still read
    refused = [e for e in logs if e["event"] == "zk_clock_sync_refused"]
    assert refused and "1970" in refused[0]["reason"]
    assert not [e for e in logs if e["event"] == "zk_clock_set"]


def test_new_punches_are_still_flagged_while_the_gateway_clock_is_unset() -> None:
    with simulator(users=2, records=1) as sim:
        driver = unset_driver(sim.port, clock_sync=True, max_drift=60)
        driver.open()
        _, mark = driver.read_new(None)
        sim.punch(sim.users[0].user_id)
        tail, _ = driver.read_new(mark)
        driver.close()
    assert tail and tail[0].suspect == {Suspect.CLOCK_DRIFT}


def test_setting_the_clock_from_an_unset_gateway_clock_is_refused_saying_what_to_do() -> None:
    with simulator() as sim:
        driver = unset_driver(sim.port)
        driver.open()
        with pytest.raises(UsageError, match=r"gateway clock.*1970.*NTP"):
            driver.set_time()
        driver.close()
        assert_terminal_still_right(sim.clock)


@pytest.mark.parametrize("year", [1970, 1999, 2100])
def test_a_time_the_terminal_cannot_hold_is_refused_not_wrapped_to_another_century(
    year: int,
) -> None:
    # The 4-byte time keeps the year modulo 100: 1970 went to the terminal as 2070.
    with simulator() as sim:
        driver = ZkDriver("lobby-1", ZkOptions(host="127.0.0.1", port=sim.port, timeout=2.0), TZ)
        driver.open()
        with pytest.raises(UsageError, match=rf"{year}.*2000.*2099"):
            driver.set_time(datetime(year, 1, 1, 0, 3, 12))
        driver.close()
        assert_terminal_still_right(sim.clock)


def stale_driver(port: int, behind: timedelta, **options: object) -> ZkDriver:
    """A driver whose gateway clock runs ``behind`` (fake-hwclock restored the shutdown time)."""
    opts = ZkOptions(host="127.0.0.1", port=port, timeout=2.0, **options)  # type: ignore[arg-type]
    return ZkDriver("lobby-1", opts, TZ, now=lambda: datetime.now(UTC) - behind)


def test_clock_sync_does_not_set_terminals_back_to_a_gateway_clock_stale_after_a_reboot() -> None:
    # Shut down on Friday, booted on Monday with Friday's time, NTP not answered yet.
    with simulator(users=2, records=1) as sim:
        driver = stale_driver(sim.port, timedelta(days=2, hours=14), clock_sync=True)
        driver.open()
        with capture_logs() as logs:
            _, mark = driver.read_new(None)
            sim.punch(sim.users[0].user_id)
            tail, _ = driver.read_new(mark)
        driver.close()
        assert_terminal_still_right(sim.clock)
    assert tail and tail[0].suspect == {Suspect.CLOCK_DRIFT}  # one of the clocks is wrong
    refused = [e for e in logs if e["event"] == "zk_clock_sync_refused"]
    assert len(refused) == 1 and "devices time lobby-1 --set" in refused[0]["reason"]


def test_clock_sync_still_corrects_a_terminal_that_missed_the_daylight_saving_change() -> None:
    with simulator() as sim:
        sim.jump_clock(timedelta(hours=-1))
        driver = stale_driver(sim.port, timedelta(0), clock_sync=True, max_drift=60)
        driver.open()
        driver.read_new(None)
        driver.close()
        assert_terminal_still_right(sim.clock)
