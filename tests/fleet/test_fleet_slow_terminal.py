"""A slow terminal with a big log is slow, not hung: the daemon must not be restarted for it."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.localbroker import LocalMosquitto
from drivers.zk import protocol as p
from tests.fleet.rig import site, stall
from tests.support.wait import wait_for

REPLY_S = 0.35  # each log chunk answered just inside the 0.5 s timeout
RECORDS = 4000  # ten 16 KiB chunks over UDP: ~3.5 s of reading, past 5 x timeout + slack


def test_a_terminal_reading_a_big_log_slowly_is_not_reported_hung(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    release = threading.Event()
    calls: list[str] = []
    with site(
        tmp_path,
        broker,
        10,
        device={"poll_interval": 1, "timeout": 0.5, "transport": "udp"},
        worker_options={"slack": 0.3},
    ) as (terminals, handle, _config):
        sup = handle.supervisor
        slow = terminals.sims["t06"]
        slow.generate(users=20, records=RECORDS, seed=6)
        slow.intercept(p.CMD_READ_BUFFER, stall(calls, "t06", release, REPLY_S))
        try:
            unhealthy: set[str] = set()

            def read_done() -> bool:
                unhealthy.update(sup.unhealthy())  # sampled all along the slow read
                worker = sup.pool.get("t06")
                return worker is not None and worker.snapshot().stored >= RECORDS

            wait_for(read_done, timeout=15, interval=0.05, what="the slow terminal's log stored")
            assert len(calls) >= 8, "the log was read in chunks, each one slow"
            assert not unhealthy, f"reported hung while it was answering: {sorted(unhealthy)}"
        finally:
            release.set()
