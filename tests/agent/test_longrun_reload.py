"""Months of config edits: reloads that add and remove terminals must not accumulate anything."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import structlog

from agent.daemon.device_state import DeviceState
from agent.localbroker import LocalMosquitto
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import GATEWAY, PREFIX, running, write_config, zk_device
from tests.support.mqtt import Collector, Message
from tests.support.wait import wait_for

CYCLES = 10


def _steady_fds() -> int:
    """Open descriptors, not counting those other threads hold for a moment (a status write,
    the short connection of a stats read): the least of 20 samples 10 ms apart."""
    counts = []
    for _ in range(20):
        counts.append(len(os.listdir("/proc/self/fd")))
        threading.Event().wait(0.01)
    return min(counts)


def _birth_devices(message: Message) -> list[str]:
    return [d["device_id"] for d in message.json()["devices"]]


def test_terminals_removed_by_reloads_leave_the_gateway_status_and_nothing_piles_up(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    # A technician tries a spare terminal and takes it out again, week after week.
    fleet = FakeFleet()
    state = tmp_path / "state"
    keep = zk_device("a-1", poll_interval=1)
    config = write_config(tmp_path / "pg.toml", state, broker.url, [keep])
    status_topic = f"{PREFIX}/{GATEWAY}/status"
    sub = Collector(broker.url, [status_topic]).start()
    try:
        with running(config, fleet.factory, mqtt_overrides={"status_interval": 0.2}) as handle:
            sup = handle.supervisor
            wait_for(
                lambda: (w := sup.pool.get("a-1")) and w.snapshot().state == DeviceState.ONLINE,
                timeout=10,
                what="a-1 online",
            )
            fds = threads = 0
            for cycle in range(CYCLES):
                spare = zk_device(f"spare-{cycle}", poll_interval=1)
                for devices in ([keep, spare], [keep]):
                    write_config(config, state, broker.url, devices)
                    with structlog.testing.capture_logs() as logs:
                        sup.request_reload()  # what SIGHUP does
                        wait_for(
                            lambda: any(e["event"] == "config_reloaded" for e in list(logs)),
                            timeout=10,
                            what=f"reload {cycle}",
                        )
                if cycle == 1:
                    fds, threads = _steady_fds(), threading.active_count()
            assert sup.pool.ids == ["a-1"]
            seen = len(sub.messages)
            births = sub.wait(
                lambda ms: len(ms) > seen + 1, timeout=10, what="two more gateway statuses"
            )
            assert _birth_devices(births[-1]) == ["a-1"], (
                "the gateway status still lists terminals removed from the configuration"
            )
            # A leak per reload would add one or more descriptors per cycle (8 since the count
            # was taken); a file some part opens once, lazily, is not one.
            assert _steady_fds() - fds < (CYCLES - 2) // 2
            assert threading.active_count() <= threads
    finally:
        sub.stop()


def test_a_reload_of_the_mqtt_section_keeps_the_gateway_start_time_and_boot(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    # A backend computes the gateway's uptime from started_at, and tells restarts by boot.
    fleet = FakeFleet()
    state = tmp_path / "state"
    devices = [zk_device("a-1", poll_interval=1)]
    config = write_config(tmp_path / "pg.toml", state, broker.url, devices)
    sub = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/status"]).start()
    try:
        with running(config, fleet.factory) as handle:
            sup = handle.supervisor
            first = sub.wait(lambda ms: ms, timeout=10, what="the first birth")[0].json()
            old = sup.delivery
            write_config(config, state, broker.url, devices, mqtt={"keepalive": 45})
            sup.request_reload()
            wait_for(lambda: sup.delivery is not old, timeout=10, what="the new delivery worker")
            births = sub.wait(
                lambda ms: any(m.json()["state"] == "online" for m in ms[1:]),
                timeout=10,
                what="the birth after the reload",
            )
            again = next(m.json() for m in births[1:] if m.json()["state"] == "online")
            assert (again["boot"], again["started_at"]) == (first["boot"], first["started_at"])
    finally:
        sub.stop()
