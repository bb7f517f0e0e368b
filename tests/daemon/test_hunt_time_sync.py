"""``time-sync`` for every device while one terminal hangs: the others must not wait behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.daemon.device_state import DeviceState
from agent.daemon.time_sync import MAX_WAIT_S, TimeSync
from agent.localbroker import LocalMosquitto
from agent.mqtt.commands import CommandFailed
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import GATEWAY, PREFIX, running, write_config, zk_device
from tests.support.mqtt import Collector
from tests.support.wait import wait_for


def test_time_sync_of_every_device_sets_the_answering_ones_while_another_hangs(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    fleet = FakeFleet()
    # timeout 10: the command waits up to 32 s for each device before giving it up.
    devices = [zk_device(d, poll_interval=1, timeout=10) for d in ("a-1", "b-1", "c-1")]
    config = write_config(tmp_path / "pg.toml", tmp_path / "state", broker.url, devices)
    sub = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/#"]).start()
    try:
        with running(config, fleet.factory) as handle:
            sup = handle.supervisor

            def online() -> bool:
                workers = [sup.pool.get(d) for d in ("a-1", "b-1", "c-1")]
                return all(w and w.snapshot().state == DeviceState.ONLINE for w in workers)

            wait_for(online, timeout=10, what="three terminals online")
            sub.wait(
                lambda ms: any(m.topic == f"{PREFIX}/{GATEWAY}/status" for m in ms),
                timeout=10,
                what="the gateway online",
            )
            fleet.terminal("a-1").hang.set()
            fleet.terminal("a-1").hanging.wait(10)
            sub.client.publish(f"{PREFIX}/{GATEWAY}/cmd/time-sync", '{"request_id": "r-1"}', qos=1)
            wait_for(
                lambda: fleet.terminal("b-1").clock_set_to and fleet.terminal("c-1").clock_set_to,
                timeout=10,
                what="b-1 and c-1 set while a-1 hangs (not 32 s after it)",
            )
            fleet.terminal("a-1").release.set()

            def reply() -> dict[str, Any] | None:
                return next((m.json() for m in sub.on("/reply/time-sync")), None)

            got = wait_for(reply, timeout=15, what="the time-sync reply")
            assert got is not None and got["ok"]
            assert {d: r["ok"] for d, r in got["result"]["devices"].items()} == {
                "a-1": True,
                "b-1": True,
                "c-1": True,
            }
    finally:
        sub.stop()


def test_time_sync_waits_at_most_its_cap_for_a_slow_link_and_the_clock_is_set_later(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    fleet = FakeFleet()
    # timeout 300 (a slow link): uncapped, one hung terminal held every command for 902 s.
    devices = [zk_device("a-1", poll_interval=1, timeout=300)]
    config = write_config(tmp_path / "pg.toml", tmp_path / "state", broker.url, devices)
    with running(config, fleet.factory) as handle:
        sup = handle.supervisor
        wait_for(
            lambda: (w := sup.pool.get("a-1")) and w.snapshot().state == DeviceState.ONLINE,
            timeout=10,
            what="a-1 online",
        )
        fleet.terminal("a-1").hang.set()
        fleet.terminal("a-1").hanging.wait(10)
        with pytest.raises(CommandFailed, match=r"did not answer within 0\.5s; its clock is set"):
            TimeSync(sup.pool, max_wait=0.5).handle({"device_id": "a-1"})
        assert fleet.terminal("a-1").clock_set_to is None
        fleet.terminal("a-1").release.set()
        wait_for(lambda: fleet.terminal("a-1").clock_set_to, timeout=10, what="the clock set")
    assert MAX_WAIT_S <= 60  # a ping queued behind time-sync waits well under minutes
