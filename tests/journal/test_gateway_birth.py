"""The retained gateway status a backend reads first, from a real ``punchgate run``."""

from __future__ import annotations

from pathlib import Path

from agent.localbroker import LocalMosquitto
from drivers.zk.simulator.server import ZkSimulator
from tests.daemon.harness import GATEWAY, PREFIX, write_config, zk_device
from tests.daemon.process import AgentProcess
from tests.support.mqtt import Collector, Message


def _births(messages: list[Message]) -> list[dict[str, object]]:
    return [
        m.json()
        for m in messages
        if m.topic == f"{PREFIX}/{GATEWAY}/status" and m.payload and m.json()["state"] == "online"
    ]


def test_the_first_online_gateway_status_lists_the_configured_terminals(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    sim = ZkSimulator(serial="BIRTH1").start()
    down = ZkSimulator(serial="BIRTH2").start()
    down_port = down.port
    down.stop()  # configured, never reachable: still a terminal of this gateway
    collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/status"]).start()
    config = write_config(
        tmp_path / "pg.toml",
        tmp_path / "state",
        broker.url,
        [
            zk_device("lobby-1", sim.port, poll_interval=1, timeout=2),
            zk_device("gate-2", down_port, poll_interval=1, timeout=1),
        ],
    )
    agent = AgentProcess(config, tmp_path).start()
    try:
        births = collector.wait(lambda ms: _births(ms), timeout=20, what="an online status")
        first = _births(births)[0]
        listed = {d["device_id"] for d in first["devices"]}  # type: ignore[attr-defined]
        assert listed == {"lobby-1", "gate-2"}, first
    finally:
        agent.stop()
        collector.stop()
        sim.stop()
