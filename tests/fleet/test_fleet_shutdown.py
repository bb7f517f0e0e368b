"""Shutdown of a site with several hung terminals: the bound holds for the whole site."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from agent.daemon.status_file import read_status
from agent.localbroker import LocalMosquitto
from drivers.zk import protocol as p
from tests.fleet.rig import site, stall
from tests.support.wait import wait_for

HUNG = ("t01", "t04", "t07", "t09")


def test_shutdown_stays_within_its_bound_when_several_terminals_hang_mid_read(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    release = threading.Event()
    calls: list[str] = []
    try:
        with site(
            tmp_path,
            broker,
            10,
            device={"poll_interval": 1, "timeout": 15},
            agent={"shutdown_timeout": 2},
        ) as (terminals, handle, _config):
            sup = handle.supervisor
            wait_for(
                lambda: (
                    sup.state == "running"
                    and all(s.state == "online" for s in sup.pool.snapshots())
                    and len(sup.pool.snapshots()) == 10
                ),
                timeout=15,
                what="every terminal online",
            )
            for name in HUNG:
                terminals.sims[name].intercept(
                    p.CMD_GET_FREE_SIZES, stall(calls, name, release, 20)
                )
            wait_for(lambda: set(calls) == set(HUNG), timeout=10, what="the terminals hung")
            started = time.monotonic()
            assert handle.stop(30)
            elapsed = time.monotonic() - started
            state = read_status(tmp_path / "state")
            release.set()  # before the terminals stop: their sessions wait on it
    finally:
        release.set()
    assert state is not None and state["state"] == "stopped"
    # The bound is shutdown_timeout (2 s) for the site, not per hung terminal.
    assert elapsed < 2 + 1.5, f"shutdown took {elapsed:.1f}s with {len(HUNG)} hung terminals"
