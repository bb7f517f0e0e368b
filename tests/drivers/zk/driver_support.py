"""Shared pieces of the ZK driver tests: a running simulator, a driver for it, expectations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from drivers.base import Punch
from drivers.zk import ZkDriver, ZkOptions
from drivers.zk.records import AttendanceRecord
from drivers.zk.simulator import ZkSimulator

TZ = ZoneInfo("Europe/Berlin")
START = datetime(2024, 3, 4)  # a Monday; the generated log stays clear of DST changes
# (record, user, event) layouts of real firmware families.
VARIANTS = {
    "tcp-fw-40": (40, 72, 32),
    "old-fw-16": (16, 28, 12),
    "old-fw-8": (8, 28, 12),
}


def local_now() -> datetime:
    """Wall-clock time now in the test timezone (naive), as a correct terminal shows it."""
    return datetime.now(TZ).replace(tzinfo=None, microsecond=0)


@contextmanager
def simulator(
    users: int = 0, records: int = 0, *, variant: str = "tcp-fw-40", **kwargs: Any
) -> Iterator[ZkSimulator]:
    """A started simulator of ``variant`` with generated data and a correct clock."""
    record_size, user_size, event_size = VARIANTS[variant]
    sim = ZkSimulator(
        record_size=record_size,
        user_size=user_size,
        event_size=event_size,
        seed=7,
        **kwargs,
    )
    sim.start()
    try:
        sim.set_clock(local_now())  # the simulator's clock is host-local; the tests use TZ
        if users or records:
            sim.generate(users=users, records=records, start=START, seed=7)
        yield sim
    finally:
        sim.stop()


def driver_for(
    sim: ZkSimulator, transport: str = "tcp", device_id: str = "lobby-1", **options: Any
) -> ZkDriver:
    """A driver for the simulator with a short timeout (tests must fail fast)."""
    options.setdefault("timeout", 2.0)
    opts = ZkOptions(host="127.0.0.1", port=sim.port, transport=transport, **options)
    return ZkDriver(device_id, opts, TZ)


def summary(punch: Punch) -> tuple[str | None, datetime, int | None, int | None]:
    """What a punch says about the record: user, device time, state, verify."""
    return (punch.employee, punch.device_time, punch.state_code, punch.verify_code)


def expected(records: list[AttendanceRecord]) -> list[tuple[str, datetime | None, int, int]]:
    """The same view of the simulator's log."""
    return [(r.user_id, r.timestamp, r.state, r.verify) for r in records]
