"""Live capture: events become punches, are acknowledged, and outages are back-filled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from config.errors import DeviceIdentityError
from drivers.base import Punch, Source
from drivers.zk import ZkDriver
from drivers.zk.records import AttendanceRecord
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import VARIANTS, driver_for, expected, simulator, summary
from tests.drivers.zk.test_driver_faults import free_port
from tests.support.wait import wait_for


class Collector:
    """Runs ``driver.live()`` slices on a thread (as the agent does) and keeps every punch."""

    def __init__(self, driver: ZkDriver, *, slice_seconds: float = 0.3) -> None:
        self.driver = driver
        self.punches: list[Punch] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._slice = slice_seconds
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for punch in self.driver.live(self._slice):
                    with self._lock:
                        self.punches.append(punch)
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> Collector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "live capture did not stop within 10s"

    def users_seen(self, source: Source | None = None) -> list[str | None]:
        with self._lock:
            return [p.employee for p in self.punches if source is None or p.source is source]


@pytest.fixture
def sim() -> Iterator[ZkSimulator]:
    with simulator(users=5, records=20) as running:
        yield running


def registered(sim: ZkSimulator) -> bool:
    return any(s.event_flags & 1 for s in sim.sessions)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_live_events_are_yielded_as_live_punches(variant: str, transport: str) -> None:
    with simulator(users=5, records=20, variant=variant) as sim:
        driver = driver_for(sim, transport)
        driver.open()
        driver.read_new(None)
        live = Collector(driver).start()
        try:
            wait_for(lambda: registered(sim), timeout=5, what="event registration")
            user = sim.users[2].user_id
            sim.punch(user, state=1, verify=15)
            wait_for(lambda: live.users_seen(Source.LIVE), timeout=5, what="a live punch")
        finally:
            live.stop()
            driver.close()
    (punch,) = [p for p in live.punches if p.source is Source.LIVE]
    assert summary(punch) == expected(sim.records[-1:])[0]
    assert punch.device_serial == "SIM0001" and punch.time_utc is not None
    assert live.errors == []


def test_live_survives_a_restart_and_back_fills_what_happened_meanwhile() -> None:
    with simulator(users=5, records=20, port=free_port()) as sim:
        restart_and_backfill(sim)


def restart_and_backfill(sim: ZkSimulator) -> None:
    driver = driver_for(sim, timeout=0.5, reconnect_min=0.05, reconnect_max=0.2)
    driver.open()
    driver.read_new(None)
    live = Collector(driver).start()
    try:
        wait_for(lambda: registered(sim), timeout=5, what="event registration")
        sim.punch(sim.users[0].user_id)
        first = sim.users[0].user_id
        wait_for(lambda: first in live.users_seen(Source.LIVE), timeout=5, what="a live punch")

        sim.stop()
        missed = [sim.punch(sim.users[1].user_id, state=s) for s in (0, 1)]  # nobody listening
        sim.start()  # same port number (it was given explicitly)
        wait_for(lambda: registered(sim), timeout=10, what="re-registration after the restart")
        wait_for(lambda: len(live.users_seen(Source.DEVICE)) >= 2, timeout=10, what="the back-fill")
        sim.punch(sim.users[2].user_id)
        wait_for(
            lambda: sim.users[2].user_id in live.users_seen(Source.LIVE),
            timeout=5,
            what="a live punch after the restart",
        )
    finally:
        live.stop()
        driver.close()
    # The back-fill reads from the last watermark: the punches missed while the terminal was
    # down, plus the one already seen live (same content, so the same id: stored once).
    backfilled = {p.identity_fields() for p in live.punches if p.source is Source.DEVICE}
    seen_live = {p.identity_fields() for p in live.punches if p.source is Source.LIVE}
    missed_ids = {summary_id(r) for r in missed if r is not None}
    assert len(missed_ids) == 2 and missed_ids <= backfilled
    assert backfilled - missed_ids <= seen_live
    assert live.errors == []
    assert driver.last_watermark is not None and driver.last_watermark["count"] == 23


def summary_id(record: AttendanceRecord) -> tuple[str, str, str, str]:
    assert record.timestamp is not None
    return ("SIM0001", record.user_id, record.timestamp.isoformat(), str(record.state))


def test_events_between_live_slices_are_not_lost(sim: ZkSimulator) -> None:
    driver = driver_for(sim)
    driver.open()
    driver.read_new(None)
    first = list(driver.live(0.1))  # registers; nothing happens yet
    sim.punch(sim.users[0].user_id)
    sim.punch(sim.users[1].user_id)
    later = wait_for(lambda: list(driver.live(0.2)), timeout=5, what="queued events")
    driver.close()
    assert first == [] and [p.employee for p in later] == [
        sim.users[0].user_id,
        sim.users[1].user_id,
    ]


def test_live_raises_identity_errors_instead_of_retrying(sim: ZkSimulator) -> None:
    driver = driver_for(sim, timeout=0.5, reconnect_min=0.05)
    driver.open()
    driver.read_new(None)
    list(driver.live(0.05))
    driver.conn.close()
    sim.set_serial("OTHER42")
    with pytest.raises(DeviceIdentityError, match="OTHER42"):
        list(driver.live(1.0))


def test_live_returns_on_time_while_the_terminal_is_down() -> None:
    with simulator() as sim:
        driver = driver_for(sim, timeout=0.3, reconnect_min=0.05, reconnect_max=0.1)
        driver.open()
        driver.read_new(None)
    started = time.monotonic()
    assert list(driver.live(0.5)) == []
    assert time.monotonic() - started < 1.5
