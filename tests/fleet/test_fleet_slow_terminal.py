"""A slow terminal with a big log is slow, not hung: the daemon must not be restarted for it."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.localbroker import LocalMosquitto
from drivers.zk import protocol as p
from tests.fleet.rig import site, stall
from tests.support.wait import wait_for

REPLY_S = 0.4  # each log chunk answered just inside the 0.5 s timeout
RECORDS = 4800  # twelve 16 KiB chunks over UDP: ~4.8 s of reading, past 5 x timeout + slack


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
        worker_options={"slack": 1.0},
    ) as (terminals, handle, _config):
        sup = handle.supervisor
        slow = terminals.sims["t06"]
        slow.generate(users=20, records=RECORDS, seed=6)
        slow.intercept(p.CMD_READ_BUFFER, stall(calls, "t06", release, REPLY_S))
        try:
            unhealthy: set[str] = set()

            def read_done() -> bool:
                # Sampled all along; only the slow one is judged (the others share 2 busy cores).
                unhealthy.update(d for d in sup.unhealthy() if d == "device t06")
                worker = sup.pool.get("t06")
                return worker is not None and worker.snapshot().stored >= RECORDS

            wait_for(read_done, timeout=15, interval=0.05, what="the slow terminal's log stored")
            assert len(calls) >= 8, "the log was read in chunks, each one slow"
            assert not unhealthy, f"reported hung while it was answering: {sorted(unhealthy)}"
        finally:
            release.set()


def test_a_terminal_answering_every_request_near_its_timeout_is_not_reported_hung(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    release = threading.Event()
    calls: list[str] = []
    with site(
        tmp_path,
        broker,
        10,
        device={"poll_interval": 1, "timeout": 0.5},
        worker_options={"slack": 1.0},
    ) as (terminals, handle, _config):
        sup = handle.supervisor
        slow = terminals.sims["t03"]
        # Each request of a poll (identity, counts, clock, log) answered just inside 0.5 s:
        # a dozen of them, more than 5 x timeout + slack in all, none late.
        for command in (
            p.CMD_OPTIONS_RRQ,
            p.CMD_GET_FREE_SIZES,
            p.CMD_GET_TIME,
            p.CMD_PREPARE_BUFFER,
            p.CMD_GET_VERSION,
        ):
            slow.intercept(command, stall(calls, "t03", release, REPLY_S))
        try:
            unhealthy: set[str] = set()

            def polled() -> bool:
                unhealthy.update(d for d in sup.unhealthy() if d == "device t03")
                worker = sup.pool.get("t03")
                return (
                    len(calls) >= 10 and worker is not None and worker.snapshot().state == "online"
                )

            wait_for(polled, timeout=15, interval=0.05, what="a slow poll of t03")
            assert not unhealthy, f"reported hung while it was answering: {sorted(unhealthy)}"
        finally:
            release.set()
