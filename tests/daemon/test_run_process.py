"""``punchgate run`` end to end: a real process, simulated ZK terminals, a real broker, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.localbroker import LocalMosquitto
from drivers.zk.simulator.server import ZkSimulator
from tests.daemon.harness import GATEWAY, PREFIX, write_config, zk_device
from tests.daemon.process import AgentProcess, NotifySocket
from tests.support.mqtt import Collector, Message


@pytest.fixture
def terminals() -> Iterator[list[ZkSimulator]]:
    sims: list[ZkSimulator] = []
    for n in range(2):
        sim = ZkSimulator(serial=f"SIMRUN{n}").start()
        for user in range(1, 6):
            sim.add_user(f"{n + 1}00{user}", f"Person {user}")
        sims.append(sim)
    try:
        yield sims
    finally:
        for sim in sims:
            sim.stop()


def _device(sim: ZkSimulator, device_id: str) -> dict[str, object]:
    return zk_device(device_id, sim.port, live=True, poll_interval=1, timeout=2)


def _status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``punchgate status`` in its own process (in-process CLI runs re-target the logs)."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _employees(messages: list[Message], device: str) -> list[str]:
    seen: dict[str, str] = {}
    for m in messages:
        if m.topic == f"{PREFIX}/{GATEWAY}/punches":
            for p in m.json()["punches"]:
                if p["device_id"] == device:
                    seen.setdefault(p["id"], p["employee"])
    return list(seen.values())


def test_run_notifies_systemd_reloads_on_sighup_and_stops_cleanly_on_sigterm(
    tmp_path: Path, broker: LocalMosquitto, terminals: list[ZkSimulator]
) -> None:
    lobby, gate = terminals
    state = tmp_path / "state"
    config = write_config(tmp_path / "pg.toml", state, broker.url, [_device(lobby, "lobby-1")])
    notify = NotifySocket(tmp_path / "notify.sock")
    collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/#"]).start()
    agent = AgentProcess(
        config, tmp_path, notify=notify.path, env={"WATCHDOG_USEC": "500000"}
    ).start()
    try:
        ready = notify.wait_for(b"READY=1")
        assert b"STATUS=" in ready
        notify.wait_for(b"WATCHDOG=1")

        lobby.punch("1001")
        collector.wait(lambda ms: _employees(ms, "lobby-1") == ["1001"], timeout=15, what="1001")

        # SIGHUP with a second terminal added: it starts, the first keeps running.
        write_config(
            config, state, broker.url, [_device(lobby, "lobby-1"), _device(gate, "gate-1")]
        )
        agent.signal(signal.SIGHUP)
        reloaded = agent.wait_event("config_reloaded")
        assert reloaded["added"] == ["gate-1"] and reloaded["removed"] == []
        gate.punch("2001")
        collector.wait(lambda ms: _employees(ms, "gate-1") == ["2001"], timeout=15, what="2001")

        # SIGHUP with a broken file: rejected with every problem, the running config goes on.
        config.write_text(config.read_text() + "\n[agent]\nbogus = 1\n", encoding="utf-8")
        agent.signal(signal.SIGHUP)
        rejected = agent.wait_event("config_reload_rejected")
        assert rejected["problems"] and "action" in rejected
        lobby.punch("1002")
        collector.wait(lambda ms: "1002" in _employees(ms, "lobby-1"), timeout=15, what="1002")

        # The live status, as a technician sees it (with the file fixed again).
        write_config(
            config, state, broker.url, [_device(lobby, "lobby-1"), _device(gate, "gate-1")]
        )
        shown = _status(config)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("punchgate is running")
        assert "lobby-1" in shown.stdout and "gate-1" in shown.stdout
        as_json = json.loads(_status(config, "--json").stdout)
        assert as_json["source"] == "daemon" and as_json["pid"] == agent.pid
        assert {d["device_id"] for d in as_json["devices"]} == {"lobby-1", "gate-1"}
        assert as_json["broker"]["connected"] is True

        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        assert time.monotonic() - started < 5 + 2  # shutdown_timeout = 5
        assert any(m.startswith(b"STOPPING=1") for m in notify.drain())
    finally:
        agent.stop()
        notify.close()
        collector.stop()
    gateway = [m.json()["state"] for m in collector.on(f"{GATEWAY}/status")]
    assert gateway[-1] == "offline"
    stopped = _status(config)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("punchgate is not running (stopped cleanly")
    assert "backlog 0" in stopped.stdout
    events = [e["event"] for e in agent.events()]
    assert events.index("daemon_stopping") < events.index("daemon_stopped")


def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    config = write_config(tmp_path / "pg.toml", tmp_path / "state", broker.url, [])
    first = AgentProcess(config, tmp_path).start()
    try:
        first.wait_event("daemon_started")
        (tmp_path / "second").mkdir()
        second = AgentProcess(config, tmp_path / "second").start()
        assert second.wait(15) == 2
        assert f"pid {first.pid}" in second.tail()
    finally:
        first.stop()
