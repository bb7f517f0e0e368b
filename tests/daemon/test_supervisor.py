"""The supervisor in-process: fake terminals, a real outbox file, a real Mosquitto broker."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.daemon.device_state import DeviceState
from agent.daemon.status_file import read_status
from agent.localbroker import LocalMosquitto
from agent.sdnotify import Notifier
from buffer.outbox import Outbox
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import GATEWAY, PREFIX, running, write_config, zk_device
from tests.daemon.process import NotifySocket
from tests.support.mqtt import Collector, Message
from tests.support.wait import wait_for


@pytest.fixture
def collector(broker: LocalMosquitto) -> Iterator[Collector]:
    sub = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/#"]).start()
    try:
        yield sub
    finally:
        sub.stop()


def _punch_ids(messages: list[Message]) -> list[str]:
    return [
        p["id"]
        for m in messages
        if m.topic == f"{PREFIX}/{GATEWAY}/punches"
        for p in m.json()["punches"]
    ]


def _employees(messages: list[Message], device: str) -> list[str]:
    seen: dict[str, str] = {}
    for m in messages:
        if m.topic == f"{PREFIX}/{GATEWAY}/punches":
            for p in m.json()["punches"]:
                if p["device_id"] == device:
                    seen.setdefault(p["id"], p["employee"])
    return list(seen.values())


def _events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in list(logs) if e["event"] == name]


def _state(sup: Any, device: str) -> str | None:
    worker = sup.pool.get(device)
    return None if worker is None else worker.snapshot().state


def test_punches_arrive_and_a_failing_device_does_not_stop_another(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    fleet = FakeFleet()
    fleet.terminal("lobby-1").unreachable = True
    gate = fleet.terminal("gate-1")
    config = write_config(
        tmp_path / "pg.toml",
        tmp_path / "state",
        broker.url,
        [zk_device("lobby-1", poll_interval=1), zk_device("gate-1", poll_interval=1, live=True)],
    )
    with running(config, fleet.factory) as handle:
        sup = handle.supervisor
        wait_for(lambda: _state(sup, "gate-1") == DeviceState.ONLINE, timeout=10, what="gate up")
        for n in range(5):
            gate.punch(f"30{n:02d}", live=True)
        collector.wait(lambda ms: len(_employees(ms, "gate-1")) == 5, timeout=10, what="5 punches")
        assert _state(sup, "lobby-1") == DeviceState.UNREACHABLE
        # The broken one comes back; its backlog follows without disturbing the other.
        fleet.terminal("lobby-1").punch("4001")
        fleet.terminal("lobby-1").unreachable = False
        collector.wait(lambda ms: _employees(ms, "lobby-1") == ["4001"], timeout=10, what="lobby")
        assert handle.stop(10)
    assert handle.error is None and handle.exit_code == 0
    assert _employees(collector.messages, "gate-1") == [f"30{n:02d}" for n in range(5)]
    statuses = [m.json() for m in collector.on("/devices/lobby-1/status")]
    assert [s["state"] for s in statuses][:1] == ["offline"]
    assert statuses[-1]["state"] == "online"


def test_sighup_reload_adds_and_removes_devices_without_restarting_the_others(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    fleet = FakeFleet()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "pg.toml",
        state,
        broker.url,
        [zk_device("a-1", poll_interval=1), zk_device("b-1", poll_interval=1)],
    )
    with running(config, fleet.factory) as handle:
        sup = handle.supervisor
        wait_for(lambda: _state(sup, "b-1") == DeviceState.ONLINE, timeout=10, what="b-1 up")
        b_worker = sup.pool.get("b-1")
        write_config(
            config,
            state,
            broker.url,
            [zk_device("b-1", poll_interval=1), zk_device("c-1", poll_interval=1)],
        )
        with structlog.testing.capture_logs() as logs:
            sup.request_reload()  # what SIGHUP does
            wait_for(lambda: _events(logs, "config_reloaded"), timeout=10, what="the reload")
        assert sorted(sup.pool.ids) == ["b-1", "c-1"]
        assert sup.pool.get("b-1") is b_worker  # untouched
        reloaded = _events(logs, "config_reloaded")
        assert reloaded[0]["added"] == ["c-1"] and reloaded[0]["removed"] == ["a-1"]
        fleet.terminal("c-1").punch("5001")
        collector.wait(lambda ms: _employees(ms, "c-1") == ["5001"], timeout=10, what="c-1 punch")
        # The removed terminal's retained status says so, instead of "online" forever.
        collector.wait(
            lambda ms: any(
                m.topic.endswith("/devices/a-1/status")
                and m.json()["state"] == "offline"
                and "removed" in (m.json()["last_error"] or "")
                for m in ms
            ),
            timeout=10,
            what="a-1 published as removed",
        )
        # A change to one device restarts only that one.
        write_config(
            config,
            state,
            broker.url,
            [zk_device("b-1", poll_interval=1), zk_device("c-1", poll_interval=2)],
        )
        with structlog.testing.capture_logs() as logs:
            sup.request_reload()
            wait_for(lambda: _events(logs, "config_reloaded"), timeout=10, what="the reload")
        assert _events(logs, "config_reloaded")[0]["changed"] == ["c-1"]
        assert sup.pool.get("b-1") is b_worker
        assert sup.pool.get("c-1") is not None
        assert sup.pool.get("c-1").device.poll_interval == 2  # type: ignore[union-attr]


def test_an_invalid_config_on_reload_is_rejected_and_the_running_one_continues(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    fleet = FakeFleet()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "pg.toml", state, broker.url, [zk_device("a-1", poll_interval=1, live=True)]
    )
    with running(config, fleet.factory) as handle:
        sup = handle.supervisor
        wait_for(lambda: _state(sup, "a-1") == DeviceState.ONLINE, timeout=10, what="a-1 up")
        worker = sup.pool.get("a-1")
        bad = [zk_device("a-1", port=99999, colour="red"), zk_device("z-1", transport="carrier")]
        write_config(config, state, broker.url, bad)
        with structlog.testing.capture_logs() as logs:
            sup.request_reload()
            wait_for(lambda: _events(logs, "config_reload_rejected"), timeout=10, what="reject")
        rejected = _events(logs, "config_reload_rejected")
        assert len(rejected) == 1
        problems = "\n".join(rejected[0]["problems"])
        assert "devices[0].port" in problems
        assert "devices[0].colour" in problems
        assert "devices[1].transport" in problems
        assert worker is not None and sup.pool.get("a-1") is worker and worker.alive
        fleet.terminal("a-1").punch("6001", live=True)
        collector.wait(lambda ms: _employees(ms, "a-1") == ["6001"], timeout=10, what="punch")
        wait_for(
            lambda: any(
                e["source"] == "reload" for e in (read_status(state) or {}).get("last_errors", [])
            ),
            timeout=5,
            what="the rejection in the live status",
        )


def test_shutdown_publishes_offline_and_closes_the_outbox_within_the_bound(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    fleet = FakeFleet()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "pg.toml",
        state,
        broker.url,
        [zk_device("a-1", poll_interval=1, live=True)],
        agent={"shutdown_timeout": 3},
    )
    # A terminal that hangs in a read must not hold the shutdown past its bound.
    fleet.terminal("a-1").punch("7001")
    with running(config, fleet.factory) as handle:
        collector.wait(lambda ms: _employees(ms, "a-1") == ["7001"], timeout=10, what="punch")
        fleet.terminal("a-1").hang.set()
        fleet.terminal("a-1").punch("7002")  # the next poll will hang in read_new
        started = time.monotonic()
        assert handle.stop(10)
        elapsed = time.monotonic() - started
    fleet.terminal("a-1").release.set()
    assert elapsed < 3 + 1.5, f"shutdown took {elapsed:.1f}s, bound is 3s"
    gateway = [m.json() for m in collector.on(f"{GATEWAY}/status")]
    assert gateway[-1]["state"] == "offline"
    wal = state / "outbox.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed on close
    status = read_status(state)
    assert status is not None and status["state"] == "stopped" and not status["running"]
    with Outbox.open(state / "outbox.db", GATEWAY) as box:
        assert box.stats().delivered == 1


def test_status_file_shows_devices_backlog_and_broker_while_running(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    fleet = FakeFleet()
    fleet.terminal("down-1").unreachable = True
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "pg.toml",
        state,
        broker.url,
        [zk_device("up-1", poll_interval=1), zk_device("down-1", poll_interval=1)],
    )
    with running(config, fleet.factory) as handle:
        sup = handle.supervisor

        def ready() -> dict[str, Any] | None:
            status = read_status(state)
            if not status or not status["broker"] or not status["broker"]["connected"]:
                return None
            states = {d["device_id"]: d["state"] for d in status["devices"]}
            return status if states == {"up-1": "online", "down-1": "unreachable"} else None

        status = wait_for(ready, timeout=10, what="a status with both devices")
        assert status is not None
        assert status["running"] and status["pid_alive"] and status["fresh"]
        assert status["backlog"] == 0 and status["gateway_id"] == GATEWAY
        down = next(d for d in status["devices"] if d["device_id"] == "down-1")
        assert "did not answer" in down["last_error"]
        assert any(e["source"] == "device down-1" for e in status["last_errors"])
        assert sup.write_status().startswith("1/2 devices online (down-1 unreachable)")


def test_ready_then_watchdog_only_while_workers_are_healthy(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    fleet = FakeFleet()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "pg.toml", state, broker.url, [zk_device("a-1", poll_interval=1, timeout=0.1)]
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})

    def pings() -> int:
        return sum(1 for m in notify.drain() if m == b"WATCHDOG=1")

    try:
        with running(config, fleet.factory, notifier=notifier, worker_options={"slack": 0.3}):
            ready = notify.wait_for(b"READY=1")
            wait_for(lambda: pings() >= 3, timeout=5, what="watchdog pings")
            messages = notify.drain()
            assert messages.index(ready) < messages.index(b"WATCHDOG=1")  # READY comes first
            fleet.terminal("a-1").hang.set()
            fleet.terminal("a-1").punch("1")
            last = {"n": pings(), "t": time.monotonic()}

            def pings_stopped() -> bool:
                # Pings come every 0.1 s while healthy: none for 0.6 s means they stopped.
                n = pings()
                if n != last["n"]:
                    last.update(n=n, t=time.monotonic())
                    return False
                return time.monotonic() - last["t"] >= 0.6

            wait_for(pings_stopped, timeout=10, what="pings to stop while a worker hangs")
            stopped_at = pings()
            fleet.terminal("a-1").hang.clear()
            fleet.terminal("a-1").release.set()
            wait_for(lambda: pings() > stopped_at, timeout=5, what="pings again after recovery")
        assert any(m.startswith(b"STOPPING=1") for m in notify.drain())
    finally:
        notify.close()


def test_the_time_sync_command_sets_a_terminal_clock_and_names_unknown_devices(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    fleet = FakeFleet()
    config = write_config(
        tmp_path / "pg.toml", tmp_path / "state", broker.url, [zk_device("a-1", poll_interval=1)]
    )
    with running(config, fleet.factory) as handle:
        wait_for(
            lambda: _state(handle.supervisor, "a-1") == DeviceState.ONLINE, timeout=10, what="up"
        )
        # The birth message follows the command subscription on the agent's connection.
        collector.wait(
            lambda ms: any(m.topic == f"{PREFIX}/{GATEWAY}/status" for m in ms),
            timeout=10,
            what="the gateway online",
        )
        command = f"{PREFIX}/{GATEWAY}/cmd/time-sync"
        collector.client.publish(command, '{"request_id": "r-1", "device_id": "a-1"}', qos=1)
        collector.client.publish(command, '{"request_id": "r-2", "device_id": "nope-1"}', qos=1)

        def replies() -> dict[str, Any] | None:
            got = {m.json()["request_id"]: m.json() for m in collector.on("/reply/time-sync")}
            return got if {"r-1", "r-2"} <= set(got) else None

        got = wait_for(replies, timeout=15, what="two time-sync replies")
        assert got is not None
    assert got["r-1"]["ok"] and got["r-1"]["result"]["devices"]["a-1"]["ok"]
    assert fleet.terminal("a-1").clock_set_to is not None
    assert not got["r-2"]["ok"] and "unknown device 'nope-1'" in got["r-2"]["error"]["message"]


def test_a_clean_stop_leaves_no_error_in_the_final_status(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    """The final status was written after the outbox closed, and recorded 'is closed'."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "pg.toml", state, broker.url, [zk_device("up-1")])
    with running(config, FakeFleet().factory) as handle:
        wait_for(lambda: (read_status(state) or {}).get("state") == "running", timeout=10)
        handle.stop(10)
    status = read_status(state)
    assert status is not None and status["state"] == "stopped"
    assert status["last_errors"] == [], status["last_errors"]
