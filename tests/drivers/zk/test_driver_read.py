"""Reading the attendance log: every firmware variant, every segmentation, TCP and UDP, tails."""

from __future__ import annotations

from datetime import timedelta

import pytest

from drivers.base import Driver, Source
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import (
    VARIANTS,
    driver_for,
    expected,
    local_now,
    simulator,
    summary,
)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_full_then_tail_read_returns_each_record_once_in_every_variant(
    variant: str, transport: str
) -> None:
    with simulator(users=12, records=300, variant=variant) as sim:
        driver = driver_for(sim, transport)
        assert isinstance(driver, Driver)
        driver.open()
        try:
            punches, mark = driver.read_new(None)
            assert [summary(p) for p in punches] == expected(sim.records)
            assert {p.device_serial for p in punches} == {"SIM0001"}
            assert all(p.source is Source.DEVICE and p.time_utc for p in punches)
            assert mark["count"] == 300 and mark["record_size"] == VARIANTS[variant][0]

            user = sim.users[3].user_id
            sim.punch(user, state=1, verify=2)
            sim.punch(user, state=0, verify=1)
            tail, mark2 = driver.read_new(mark)
            assert [summary(p) for p in tail] == expected(sim.records[-2:])
            assert driver.last_read is not None and not driver.last_read.full
            assert mark2["count"] == 302

            nothing, mark3 = driver.read_new(mark2)
            assert nothing == [] and mark3 == mark2
        finally:
            driver.close()


@pytest.mark.parametrize("segmentation", ["all", "frame", "random", "trickle"])
def test_reassembly_is_correct_under_every_tcp_segmentation(segmentation: str) -> None:
    # 2,000 bytes of records: above one DATA frame, so the PREPARE_DATA + DATA path is taken.
    records = 50 if segmentation == "trickle" else 400
    with simulator(users=5, records=records) as sim:
        sim.faults.segmentation = segmentation
        driver = driver_for(sim)
        driver.open()
        try:
            punches, _mark = driver.read_new(None)
        finally:
            driver.close()
    assert [summary(p) for p in punches] == expected(sim.records)


def test_frames_spaced_in_time_are_reassembled() -> None:
    with simulator(users=5, records=120) as sim:
        sim.faults.frame_latency = 0.02
        driver = driver_for(sim)
        driver.open()
        punches, _ = driver.read_new(None)
        driver.close()
    assert [summary(p) for p in punches] == expected(sim.records)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_incremental_pull_reads_only_the_tail(transport: str) -> None:
    with simulator(users=20, records=3000) as sim:
        driver = driver_for(sim, transport)
        driver.open()
        try:
            before = driver.conn.bytes_received
            everything, mark = driver.read_new(None)
            full_bytes = driver.conn.bytes_received - before
            assert [summary(p) for p in everything] == expected(sim.records)
            for _ in range(10):
                sim.punch(sim.users[0].user_id)
            before = driver.conn.bytes_received
            tail, _ = driver.read_new(mark)
            tail_bytes = driver.conn.bytes_received - before
        finally:
            driver.close()
    assert len(tail) == 10 and [summary(p) for p in tail] == expected(sim.records[-10:])
    assert full_bytes > 120_000
    # 11 records of 40 bytes plus headers and the small replies of a poll: well under 2 KB.
    assert tail_bytes < 2_000


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("variant", ["old-fw-16", "old-fw-8"])
def test_records_straddling_chunk_boundaries_are_read_exactly(variant: str, transport: str) -> None:
    # 6,000 records: several 1504 chunks (64 KB over TCP, 16 KB over UDP) whose boundaries
    # fall inside records, because the buffer starts with its 4-byte total.
    with simulator(users=30, records=6000, variant=variant) as sim:
        driver = driver_for(sim, transport)
        driver.open()
        punches, _ = driver.read_new(None)
        driver.close()
    assert [summary(p) for p in punches] == expected(sim.records)


def test_cleared_log_falls_back_to_a_full_read() -> None:
    with simulator(users=5, records=200) as sim:
        driver = driver_for(sim)
        driver.open()
        _punches, mark = driver.read_new(None)
        sim.clear_log()
        empty, mark_empty = driver.read_new(mark)
        assert empty == [] and mark_empty["count"] == 0
        assert driver.last_read is not None and driver.last_read.reason == "log cleared"
        sim.punch(sim.users[0].user_id)
        fresh, _ = driver.read_new(mark)  # the old watermark: count 200 > 1 record now
        driver.close()
    assert [summary(p) for p in fresh] == expected(sim.records)


def test_log_rewritten_to_the_same_size_is_detected_by_the_last_record() -> None:
    with simulator(users=5, records=100) as sim:
        driver = driver_for(sim)
        driver.open()
        _punches, mark = driver.read_new(None)
        sim.clear_log()
        sim.generate(records=100, start=local_now() - timedelta(days=3), seed=99)
        sim.punch(sim.users[1].user_id)  # 101 records: more than we held, but not ours
        again, _ = driver.read_new(mark)
        reason = driver.last_read.reason if driver.last_read else ""
        driver.close()
    assert "moved" in reason
    assert [summary(p) for p in again] == expected(sim.records)


def test_a_watermark_of_another_terminal_means_a_full_read() -> None:
    with simulator(users=3, records=60) as sim:
        driver = driver_for(sim)
        driver.open()
        _, mark = driver.read_new(None)
        foreign = {**mark, "serial": "OTHER"}
        again, _ = driver.read_new(foreign)
        driver.close()
    assert len(again) == 60


def test_empty_log_reads_nothing_and_marks_zero() -> None:
    with simulator() as sim:
        driver = driver_for(sim)
        driver.open()
        punches, mark = driver.read_new(None)
        driver.close()
    assert punches == [] and mark["count"] == 0


def test_a_record_with_an_impossible_date_does_not_abort_the_read(sim_40: ZkSimulator) -> None:
    sim_40.faults.impossible_date_at = 17
    driver = driver_for(sim_40)
    driver.open()
    punches, _ = driver.read_new(None)
    driver.close()
    assert len(punches) == 100
    bad = punches[17]
    assert bad.time_utc is None and bad.raw is not None and "time_invalid" in bad.suspect
    others = punches[:17] + punches[18:]
    assert [summary(p) for p in others] == expected(sim_40.records[:17] + sim_40.records[18:])


@pytest.fixture
def sim_40() -> ZkSimulator:
    with simulator(users=5, records=100) as sim:
        yield sim
