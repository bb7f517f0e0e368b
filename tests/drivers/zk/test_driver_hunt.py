"""Field inputs that once got past the driver: each test pins one bug found by a hunt."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from config.errors import ProtocolError
from drivers.zk import protocol as p
from tests.drivers.zk.driver_support import driver_for, expected, simulator, summary


@pytest.mark.parametrize(
    ("variant", "served"),
    [("tcp-fw-40", 80), ("old-fw-16", 48), ("old-fw-8", 24)],
)
def test_records_of_a_multiple_of_the_known_size_are_refused_not_split_into_garbage_punches(
    variant: str, served: int
) -> None:
    # A firmware update that changes the record layout to a multiple of the old size: the
    # buffer still divides by the watermark's record size, but GET_FREE_SIZES counts half (or a
    # third) as many records. Reading it as old-size records invents punches from padding.
    with simulator(users=5, records=31, variant=variant) as sim:
        driver = driver_for(sim)
        driver.open()
        first, mark = driver.read_new(None)
        assert [summary(p) for p in first] == expected(sim.records)
        sim.faults.record_size_override = served
        with pytest.raises(ProtocolError, match=rf"{31 * served} bytes for 31 records"):
            driver.read_new(mark)
        assert driver.last_watermark == mark  # nothing was parsed, so nothing counts as read
        sim.faults.record_size_override = None
        again, _ = driver.read_new(mark)
        driver.close()
    assert again == []  # the layout is back: the tail read finds nothing new


def test_punches_landing_around_both_record_counts_are_read_with_the_known_record_size() -> None:
    # A busy terminal: a punch lands before and after each GET_FREE_SIZES answer, so neither
    # count matches the prepared buffer. The buffer's count lies between the two answers: the
    # watermark's record size reads it (the refusal above must not break this).
    with simulator(users=5, records=28) as sim:
        driver = driver_for(sim)
        driver.open()
        _, mark = driver.read_new(None)
        handlers = sim._terminal._handlers  # the device's firmware, not the unit under test
        answer = handlers[p.CMD_GET_FREE_SIZES]
        user = sim.users[0].user_id

        def busy(session: Any, request: p.Packet) -> Any:
            sim.punch(user)
            reply = answer(session, request)
            sim.punch(user, state=1)
            return reply

        handlers[p.CMD_GET_FREE_SIZES] = busy
        new, after = driver.read_new(mark)  # counts 29 and 31 around a buffer of 30 records
        handlers[p.CMD_GET_FREE_SIZES] = answer
        driver.close()
    assert after["count"] == 30
    assert [summary(punch) for punch in new] == expected(sim.records[28:30])


def test_log_is_not_cleared_when_the_terminal_cannot_be_disabled_for_the_clear() -> None:
    # Disabling the terminal is what stops a punch landing between the last check and
    # CLEAR_ATTLOG; a firmware that does not do it would lose such a punch: nothing is cleared.
    with simulator(users=2, records=46, record_capacity=50) as sim:
        sim.faults.unknown_commands = frozenset({p.CMD_DISABLEDEVICE})
        driver = driver_for(sim, clear_after_read=True, clear_threshold=0.9)
        driver.open()
        _, mark = driver.read_new(None)
        with capture_logs() as logs:
            assert driver.clear_log_if_due(int(mark["count"])) is False  # type: ignore[call-overload]
        assert len(sim.records) == 46
        sim.faults.unknown_commands = frozenset()
        assert driver.clear_log_if_due(int(mark["count"])) is True  # type: ignore[call-overload]
        driver.close()
        assert sim.records == []
    skipped = [e for e in logs if e["event"] == "zk_clear_skipped"]
    assert skipped and "DISABLE_DEVICE" in skipped[0]["reason"]
