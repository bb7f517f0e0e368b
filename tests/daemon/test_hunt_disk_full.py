"""A state directory with no space left for the daemon's small files must not stop delivery.

The lock file's pid and the boot counter are bookkeeping; the backlog in the outbox is what the
gateway is for. ``/dev/full`` answers every write with ENOSPC, exactly as a full disk does.
"""

from __future__ import annotations

from pathlib import Path

from agent.daemon.device_state import DeviceState
from agent.localbroker import LocalMosquitto
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import GATEWAY, PREFIX, running, write_config, zk_device
from tests.support.mqtt import Collector
from tests.support.wait import wait_for


def test_the_daemon_starts_and_delivers_when_its_lock_pid_and_boot_counter_cannot_be_written(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    fleet = FakeFleet()
    state = tmp_path / "state"
    state.mkdir()
    (state / "daemon.lock").symlink_to("/dev/full")
    (state / "boot-counter.tmp").symlink_to("/dev/full")
    config = write_config(
        tmp_path / "pg.toml", state, broker.url, [zk_device("a-1", poll_interval=1)]
    )
    fleet.terminal("a-1").punch("8001")
    sub = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/#"]).start()
    try:
        with running(config, fleet.factory) as handle:
            wait_for(
                lambda: handle.error is not None
                or ((w := handle.supervisor.pool.get("a-1")) is not None
                    and w.snapshot().state == DeviceState.ONLINE),
                timeout=10,
                what="a-1 online (or the daemon failing)",
            )  # fmt: skip
            assert handle.error is None, f"the daemon did not start: {handle.error!r}"
            sub.wait(
                lambda ms: any(
                    p["employee"] == "8001"
                    for m in ms
                    if m.topic.endswith("/punches")
                    for p in m.json()["punches"]
                ),
                timeout=10,
                what="the punch delivered",
            )
            online = [
                m.json() for m in sub.on(f"{GATEWAY}/status") if m.json()["state"] == "online"
            ]
            assert online and online[-1]["boot"] == 0
    finally:
        sub.stop()
