"""SIGHUP on a site: a removed terminal stops and stays removed, an added one starts."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.localbroker import LocalMosquitto
from drivers.zk import protocol as p
from drivers.zk.simulator.server import ZkSimulator
from tests.daemon.harness import GATEWAY, write_config
from tests.fleet.rig import site, stall
from tests.support.mqtt import Collector
from tests.support.wait import wait_for


def test_a_terminal_removed_while_hung_stays_removed_and_an_added_one_starts(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    release = threading.Event()
    calls: list[str] = []
    agent = {"shutdown_timeout": 1}
    device = {"poll_interval": 1, "timeout": 3}
    with site(tmp_path, broker, 10, device=device, agent=agent) as (terminals, handle, config):
        sup = handle.supervisor
        wait_for(
            lambda: (
                len(sup.pool.snapshots()) == 10
                and all(s.state == "online" for s in sup.pool.snapshots())
            ),
            timeout=15,
            what="every terminal online",
        )
        others = {w.device_id: w for w in sup.pool.workers() if w.device_id != "t04"}
        removed = sup.pool.get("t04")
        assert removed is not None
        # t04 hangs mid-poll longer than the reload waits for it (timeout 3 s > 1 s).
        terminals.sims["t04"].intercept(p.CMD_GET_FREE_SIZES, stall(calls, "t04", release, 2.5))
        wait_for(lambda: calls, timeout=5, what="t04 hung")
        with ZkSimulator(serial="FLEET-NEW") as added:
            added.add_user("7777")
            added.punch("7777")
            devices = [d for d in terminals.devices(**device) if d["id"] != "t04"]
            devices.append({**devices[0], "id": "t10", "port": added.port})
            write_config(config, tmp_path / "state", broker.url, devices, agent=agent)
            sup.request_reload()
            wait_for(lambda: "t10" in sup.pool and "t04" not in sup.pool, timeout=10, what="reload")
            wait_for(
                lambda: (sup.pool.get("t10") or removed).snapshot().stored == 1,
                timeout=10,
                what="the added terminal's punch stored",
            )
            # The hung one's read ends after the reload gave up on it; whatever it says then
            # must not bring the removed terminal back.
            wait_for(
                lambda: not removed.alive, timeout=10, what="the removed worker's thread ended"
            )
            release.set()
            final = wait_for(
                lambda: [
                    m.json()
                    for m in collector.on(f"{GATEWAY}/devices/t04/status")
                    if m.json().get("last_error") == "removed from the configuration"
                ],
                timeout=10,
                what="the removed status",
            )
            assert final
            last = collector.on(f"{GATEWAY}/devices/t04/status")[-1].json()
            assert last["last_error"] == "removed from the configuration", last
            assert all(sup.pool.get(d) is w for d, w in others.items())  # untouched
