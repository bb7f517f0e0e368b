"""A device worker against a fake terminal and a real outbox file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog

from agent.daemon.device_state import DeviceState, format_duration
from agent.daemon.device_worker import DeviceWorker
from buffer.outbox import Outbox
from config.settings import ZkDeviceSettings
from drivers.backoff import Backoff
from tests.daemon.fakes import FakeDriver, FakeTerminal
from tests.support.wait import wait_for


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open(tmp_path / "outbox.db", "gw-test", disk_reserve_bytes=0)
    try:
        yield box
    finally:
        box.close()


def _device(**overrides: Any) -> ZkDeviceSettings:
    values: dict[str, Any] = {"id": "lobby-1", "kind": "zk", "host": "127.0.0.1"}
    values["poll_interval"] = 1
    values.update(overrides)
    return ZkDeviceSettings(**values)


def _worker(terminal: FakeTerminal, outbox: Outbox, **kwargs: Any) -> DeviceWorker:
    device = kwargs.pop("device", None) or _device(id=terminal.device_id)
    return DeviceWorker(
        device,
        lambda: FakeDriver(terminal),
        outbox,
        ZoneInfo("UTC"),
        backoff=Backoff(0.01, 0.05),
        **kwargs,
    )


def _events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def test_polled_punches_are_stored_once_with_the_watermark_that_covers_them(
    outbox: Outbox,
) -> None:
    terminal = FakeTerminal("lobby-1")
    for employee in ("1001", "1002", "1003"):
        terminal.punch(employee)
    worker = _worker(terminal, outbox).start()
    try:
        wait_for(lambda: outbox.stats().pending == 3, timeout=5, what="3 punches stored")
        assert outbox.watermark("lobby-1") == {"n": 3}
        assert outbox.device_serial("lobby-1") == "FAKE-lobby-1"
        terminal.punch("1004")
        wait_for(lambda: outbox.stats().pending == 4, timeout=5, what="the 4th punch")
        assert [p.employee for p in outbox.list()] == ["1001", "1002", "1003", "1004"]
        assert worker.snapshot().state == DeviceState.ONLINE
        assert worker.snapshot().records == 4
    finally:
        worker.stop()
        assert worker.join(5)
    assert worker.snapshot().state == DeviceState.STOPPED


def test_live_punches_are_stored_as_they_arrive(outbox: Outbox) -> None:
    terminal = FakeTerminal("gate-1")
    worker = _worker(terminal, outbox, device=_device(id="gate-1", live=True), live_chunk=0.1)
    worker.start()
    try:
        wait_for(lambda: worker.snapshot().state == DeviceState.ONLINE, timeout=5, what="online")
        terminal.punch("2001", live=True)
        wait_for(lambda: outbox.stats().pending == 1, timeout=2, what="the live punch stored")
        assert outbox.list()[0].employee == "2001"
    finally:
        worker.stop()
        assert worker.join(5)


def test_a_link_lost_inside_live_capture_shows_as_unreachable_until_it_is_back(
    outbox: Outbox,
) -> None:
    terminal = FakeTerminal("dock-1")
    worker = _worker(terminal, outbox, device=_device(id="dock-1", live=True), live_chunk=0.1)
    worker.start()
    try:
        wait_for(lambda: worker.snapshot().state == DeviceState.ONLINE, timeout=5, what="up")
        terminal.link_lost = True
        wait_for(lambda: worker.snapshot().state == DeviceState.UNREACHABLE, timeout=5, what="down")
        assert "reconnecting" in (worker.snapshot().last_error or "")
        terminal.link_lost = False
        wait_for(lambda: worker.snapshot().state == DeviceState.ONLINE, timeout=5, what="back")
    finally:
        worker.stop()
        assert worker.join(5)


def test_an_unreachable_terminal_is_logged_once_and_its_recovery_once(outbox: Outbox) -> None:
    terminal = FakeTerminal("lobby-1")
    with structlog.testing.capture_logs() as logs:
        worker = _worker(terminal, outbox).start()
        try:
            wait_for(lambda: worker.snapshot().state == DeviceState.ONLINE, timeout=5, what="up")
            terminal.unreachable = True
            wait_for(lambda: terminal.opens >= 6, timeout=10, what="several failed reconnects")
            snapshot = worker.snapshot()
            assert snapshot.state == DeviceState.UNREACHABLE
            assert "did not answer" in (snapshot.last_error or "")
            terminal.unreachable = False
            terminal.punch("1001")
            wait_for(lambda: outbox.stats().pending == 1, timeout=5, what="punch after recovery")
        finally:
            worker.stop()
            assert worker.join(5)
    assert len(_events(logs, "device_unreachable")) == 1
    recovered = _events(logs, "device_recovered")
    assert len(recovered) == 1 and recovered[0]["after"].endswith("s")
    assert worker.snapshot().last_error is None


def test_a_refused_comm_key_is_a_failed_state_naming_the_fix(outbox: Outbox) -> None:
    terminal = FakeTerminal("lobby-1")
    terminal.auth_fails = True
    with structlog.testing.capture_logs() as logs:
        worker = _worker(terminal, outbox).start()
        try:
            wait_for(lambda: terminal.opens >= 3, timeout=5, what="retries")
            assert worker.snapshot().state == DeviceState.FAILED
        finally:
            worker.stop()
            assert worker.join(5)
    failed = _events(logs, "device_failed")
    assert len(failed) == 1 and "comm_key" in failed[0]["action"]


def test_a_worker_stuck_in_a_read_is_reported_unhealthy_and_recovers(outbox: Outbox) -> None:
    terminal = FakeTerminal("lobby-1")
    worker = _worker(terminal, outbox, device=_device(timeout=0.1), slack=0.2)
    worker.start()
    try:
        wait_for(lambda: worker.snapshot().state == DeviceState.ONLINE, timeout=5, what="up")
        assert worker.healthy()
        terminal.hang.set()
        wait_for(lambda: not worker.healthy(), timeout=5, what="the hang to be noticed")
        terminal.hang.clear()
        terminal.release.set()
        wait_for(worker.healthy, timeout=5, what="healthy again")
    finally:
        terminal.release.set()
        worker.stop()
        assert worker.join(5)


def test_submitted_jobs_run_on_the_worker_with_the_terminal_connected(outbox: Outbox) -> None:
    terminal = FakeTerminal("lobby-1")
    worker = _worker(terminal, outbox).start()
    try:
        wait_for(lambda: worker.snapshot().state == DeviceState.ONLINE, timeout=5, what="up")
        future = worker.submit(lambda driver: driver.info().serial)
        assert future.result(timeout=5) == "FAKE-lobby-1"
    finally:
        worker.stop()
        assert worker.join(5)
    late = worker.submit(lambda driver: None)
    with pytest.raises(Exception, match="stopping"):
        late.result(timeout=1)


def test_clock_drift_is_reported_and_the_driver_is_reused_across_reconnects(
    outbox: Outbox,
) -> None:
    terminal = FakeTerminal("lobby-1")
    terminal.clock_offset = timedelta(minutes=10)
    built: list[FakeDriver] = []

    def factory() -> FakeDriver:
        built.append(FakeDriver(terminal))
        return built[-1]

    worker = DeviceWorker(
        _device(), factory, outbox, ZoneInfo("UTC"), backoff=Backoff(0.01, 0.05)
    ).start()
    try:
        wait_for(lambda: terminal.opens >= 3, timeout=5, what="three poll cycles")
        assert 590 <= (worker.snapshot().drift_s or 0) <= 610
    finally:
        worker.stop()
        assert worker.join(5)
    # One driver object for the worker's life: its alarms and pinned serial survive reconnects.
    assert len(built) == 1


def test_durations_read_like_a_person_writes_them() -> None:
    assert format_duration(252) == "4m12s"
    assert format_duration(0.2) == "0s"
    assert format_duration(90061) == "1d1h1m1s"
