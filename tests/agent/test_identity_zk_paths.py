"""One physical ZK punch, one id: seen live, pulled from the log, re-pulled after a restart.

The punch goes from the terminal (simulator, every firmware family) through the real driver
into a real outbox; the outbox's content-derived id is what the backend de-duplicates on.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.mqtt.contract import Contract, punch_payload
from buffer import Outbox
from buffer.identity import punch_id
from buffer.payload import PayloadReader
from drivers.base import Punch, Source
from drivers.zk import ZkDriver, ZkOptions
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import VARIANTS, simulator

GATEWAY = "gw-identity"
CONTRACT = Contract.load()

# Device-local times a terminal records in each zone: the DST fold and gap of 2026 (a time in
# the gap is what a clock that missed the change shows), plus clocks far off.
ZONES = {
    "Europe/Lisbon": [datetime(2026, 10, 25, 1, 30, 7), datetime(2026, 3, 29, 1, 30, 7)],
    "America/Santiago": [datetime(2026, 4, 4, 23, 30, 7), datetime(2026, 9, 6, 0, 30, 7)],
    "Australia/Lord_Howe": [datetime(2026, 4, 5, 1, 45, 7), datetime(2026, 10, 4, 2, 15, 7)],
    "Asia/Kathmandu": [datetime(2026, 6, 1, 23, 59, 59), datetime(2026, 6, 2, 0, 0, 0)],
    # Negative and quarter-hour offsets in the contract's "time" (-02:30, +13:45).
    "America/St_Johns": [datetime(2026, 11, 1, 1, 30, 7), datetime(2026, 3, 8, 2, 30, 7)],
    "Pacific/Chatham": [datetime(2026, 4, 5, 3, 15, 7), datetime(2026, 9, 27, 3, 15, 7)],
}
FAR_OFF = [datetime(2000, 1, 1, 0, 0, 5), datetime(2038, 1, 19, 3, 14, 8), datetime(2099, 12, 31)]


def _driver(sim: ZkSimulator, tz: ZoneInfo, transport: str) -> ZkDriver:
    options = ZkOptions(host="127.0.0.1", port=sim.port, transport=transport, timeout=2.0)
    return ZkDriver("lobby-1", options, tz)


def _live_punches(driver: ZkDriver, count: int, deadline: float) -> list[Punch]:
    seen: list[Punch] = []
    while len(seen) < count and time.monotonic() < deadline:
        seen.extend(driver.live(0.2))
    return seen


@pytest.mark.parametrize("zone", list(ZONES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_punch_seen_live_then_pulled_after_a_restart_is_stored_once(
    variant: str, zone: str, tmp_path: Path
) -> None:
    tz = ZoneInfo(zone)
    transport = "tcp" if variant == "tcp-fw-40" else "udp"
    times = ZONES[zone] + FAR_OFF
    with (
        simulator(users=4, records=10, variant=variant) as sim,
        Outbox.open(tmp_path / "outbox.db", GATEWAY, disk_reserve_bytes=0) as outbox,
    ):
        daemon = _driver(sim, tz, transport)
        daemon.open()
        try:
            daemon.register_events(True)
            for n, when in enumerate(times):
                sim.punch(sim.users[n % 4].user_id, state=n % 2, when=when)
            live = _live_punches(daemon, len(times), time.monotonic() + 10)
        finally:
            daemon.close()
        assert [p.device_time for p in live] == times
        assert all(p.source is Source.LIVE for p in live)
        outbox.add_punches(live, device_id="lobby-1")

        # The agent was upgraded and restarted: no watermark, a full read of the log.
        for _restart in range(2):
            again = _driver(sim, tz, transport)
            again.open()
            try:
                pulled, mark = again.read_new(None)
            finally:
                again.close()
            stored = outbox.add_punches(pulled, device_id="lobby-1", watermark=mark)
            assert stored.inserted == (10 if _restart == 0 else 0)

        rows = outbox.list(limit=100)
        payloads = _payloads(outbox, tmp_path / "outbox.db")
    live_ids = [punch_id(GATEWAY, p) for p in live]
    pulled_by_id = {punch_id(GATEWAY, p): p for p in pulled}
    assert len(rows) == 10 + len(times) == len(pulled)
    for punch, pid in zip(live, live_ids, strict=True):
        twin = pulled_by_id[pid]
        assert (twin.employee, twin.device_time, twin.time_utc) == (
            punch.employee,
            punch.device_time,
            punch.time_utc,
        )
        assert twin.suspect == punch.suspect
        # What the backend receives: the same employee and instant, the wall time it recorded.
        sent = payloads[pid]
        assert CONTRACT.errors("punch", sent) == []
        assert sent["employee"] == punch.employee
        assert sent["device_time"] == punch.device_time.isoformat()
        assert punch.time_utc is not None and punch.utc_offset_minutes is not None
        assert datetime.fromisoformat(sent["time_utc"]) == punch.time_utc
        local = datetime.fromisoformat(sent["time"])
        assert local.replace(tzinfo=None) == punch.device_time
        assert local.utcoffset() == timedelta(minutes=punch.utc_offset_minutes)
        assert sorted(sent["suspect"]) == sorted(flag.value for flag in punch.suspect)


def _payloads(outbox: Outbox, path: Path) -> dict[str, dict[str, Any]]:
    """Contract JSON of every pending row, as the delivery worker reads it (SQL or Python)."""
    reader = PayloadReader(path, 5.0, "site-1")
    try:
        _seqs, ids, parts = reader.read(1000, 0)
    finally:
        reader.close()
    out: dict[str, dict[str, Any]] = {}
    for pid, part in zip(ids, parts, strict=True):
        if part:
            out[pid] = json.loads(part)
        else:
            stored = outbox.get(pid)
            assert stored is not None
            out[pid] = json.loads(json.dumps(punch_payload(stored, "site-1")))
    return out
