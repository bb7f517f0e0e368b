"""A fake terminal implementing the ``Driver`` protocol, for supervisor tests without a network.

The fake is a real implementation of the role (the unit under test is the supervisor, never the
fake): it keeps a log, answers ``read_new`` from a watermark, pushes live punches through a queue,
and can be told to be unreachable or to hang.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from config.errors import DeviceAuthError, DeviceUnavailable
from config.settings import Settings
from drivers.base import DeviceInfo, Punch, PunchState, Source, VerifyMethod

BASE_TIME = datetime(2026, 3, 2, 8, 0, 0)


class FakeTerminal:
    """The terminal's state, shared by every driver instance built for it."""

    def __init__(self, device_id: str, serial: str | None = None) -> None:
        self.device_id = device_id
        self.serial = serial or f"FAKE-{device_id}"
        self.log: list[Punch] = []
        self.live_queue: queue.SimpleQueue[Punch] = queue.SimpleQueue()
        self.unreachable = False
        self.link_lost = False  # like a serial driver: live() rides it out, connected says so
        self.auth_fails = False
        self.hang = threading.Event()  # set: read_new blocks until released
        self.release = threading.Event()
        self.hanging = threading.Event()  # set while read_new is blocked by ``hang``
        self.opens = 0
        self.clock_offset = timedelta(0)
        self.clock_set_to: datetime | None = None
        self._lock = threading.Lock()

    def punch(self, employee: str, *, live: bool = False) -> Punch:
        """Record a punch (and push it as a live event when ``live``)."""
        with self._lock:
            when = BASE_TIME + timedelta(seconds=len(self.log))
            punch = Punch(
                device_id=self.device_id,
                device_serial=self.serial,
                employee=employee,
                device_time=when,
                time_utc=when.replace(tzinfo=UTC),
                utc_offset_minutes=0,
                state=PunchState.IN,
                state_code=0,
                verify=VerifyMethod.FINGERPRINT,
                verify_code=1,
                source=Source.LIVE if live else Source.DEVICE,
            )
            self.log.append(punch)
        if live:
            self.live_queue.put(punch)
        return punch


class FakeDriver:
    """One connection to a ``FakeTerminal``."""

    def __init__(self, terminal: FakeTerminal) -> None:
        self.device_id = terminal.device_id
        self.terminal = terminal
        self.connected = False

    def open(self) -> None:
        self.terminal.opens += 1
        if self.terminal.unreachable:
            raise DeviceUnavailable(f"{self.device_id}: 127.0.0.1:4370 did not answer (fake)")
        if self.terminal.auth_fails:
            raise DeviceAuthError(f"{self.device_id}: the terminal refused the comm key (fake)")
        self.connected = True

    def close(self) -> None:
        self.connected = False

    def _check(self) -> None:
        if self.terminal.link_lost:
            return  # the driver itself keeps trying, as the serial driver does
        if not self.connected:
            raise DeviceUnavailable(f"{self.device_id}: not connected")
        if self.terminal.unreachable:
            self.connected = False
            raise DeviceUnavailable(f"{self.device_id}: connection reset (fake)")

    def info(self) -> DeviceInfo:
        self._check()
        clock = datetime.now(UTC).replace(tzinfo=None) + self.terminal.clock_offset
        return DeviceInfo(
            serial=self.terminal.serial,
            records=len(self.terminal.log),
            record_capacity=100_000,
            users=10,
            clock=clock,
        )

    def read_new(
        self, watermark: dict[str, object] | None
    ) -> tuple[list[Punch], dict[str, object]]:
        self._check()
        if self.terminal.hang.is_set():
            self.terminal.hanging.set()
            self.terminal.release.wait(30)
        start = int(watermark.get("n", 0)) if watermark else 0  # type: ignore[call-overload]
        log = list(self.terminal.log)
        return log[start:], {"n": len(log)}

    def live(self, stop_after: float) -> Iterator[Punch]:
        self._check()
        deadline = time.monotonic() + stop_after
        self.connected = not self.terminal.link_lost
        if self.terminal.link_lost:
            self.terminal.release.wait(stop_after)  # nothing arrives while the link is down
            return
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                yield self.terminal.live_queue.get(timeout=min(left, 0.05))
            except queue.Empty:
                self._check()

    def set_time(self, when: datetime) -> None:
        self._check()
        self.terminal.clock_set_to = when
        self.terminal.clock_offset = timedelta(0)


class FakeFleet:
    """Terminals by device id; ``factory`` has the ``build_driver(settings, device)`` shape."""

    def __init__(self) -> None:
        self.terminals: dict[str, FakeTerminal] = {}

    def terminal(self, device_id: str) -> FakeTerminal:
        if device_id not in self.terminals:
            self.terminals[device_id] = FakeTerminal(device_id)
        return self.terminals[device_id]

    def factory(self, _settings: Settings, device: object) -> FakeDriver:
        return FakeDriver(self.terminal(device.id))  # type: ignore[attr-defined]
