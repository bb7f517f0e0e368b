"""A site for the contract day: ZK simulators, a real broker, the daemon, and the HR consumer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.localbroker import LocalMosquitto
from drivers.zk.simulator.server import ZkSimulator
from tests.contract.consumer import ContractConsumer
from tests.daemon.harness import write_config, zk_device
from tests.daemon.process import AgentProcess

GATEWAY = "gw-day"
ZONE = ZoneInfo("Europe/Berlin")


@dataclass
class Site:
    """One gateway's site: its config, terminals and daemon."""

    tmp: Path
    gateway: str
    config: Path
    terminals: dict[str, ZkSimulator]
    agent: AgentProcess

    def start(self, consumer: ContractConsumer) -> None:
        """Start the daemon and wait for its birth message."""
        self.agent.start()
        consumer.wait(lambda: consumer.boots(self.gateway), 20, f"{self.gateway}'s birth")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``punchgate ARGS --config CONFIG`` in its own process."""
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"punchgate {args} exited {done.returncode}: {done.stderr}")
        return done

    def cli_json(self, *args: str) -> Any:
        """``punchgate ARGS --json`` parsed."""
        return json.loads(self.cli(*args, "--json").stdout)


def make_site(
    tmp: Path,
    broker: LocalMosquitto,
    gateway: str,
    devices: int = 1,
    mqtt: dict[str, Any] | None = None,
) -> Site:
    """Terminals with five enrolled users each, a config and a (not yet started) daemon."""
    terminals: dict[str, ZkSimulator] = {}
    for n in range(devices):
        sim = ZkSimulator(serial=f"{gateway.upper()}{n}").start()
        sim.set_clock(datetime.now(ZONE).replace(tzinfo=None))  # the site's wall clock
        for user in range(1, 6):
            sim.add_user(f"{n + 1}00{user}", f"Person {user}")
        terminals[f"term-{n + 1}"] = sim
    state = tmp / f"state-{gateway}"
    config = write_config(
        tmp / f"{gateway}.toml",
        state,
        broker.url,
        [
            zk_device(device_id, sim.port, live=True, poll_interval=1, timeout=2)
            for device_id, sim in terminals.items()
        ],
        agent={"gateway_id": gateway, "timezone": ZONE.key},
        mqtt=mqtt,
    )
    return Site(tmp, gateway, config, terminals, AgentProcess(config, tmp))


@pytest.fixture
def consumer(broker: LocalMosquitto) -> Iterator[ContractConsumer]:
    """The HR backend's judging consumer, subscribed before any gateway starts."""
    instance = ContractConsumer(broker.url).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def site(tmp_path: Path, broker: LocalMosquitto) -> Iterator[Site]:
    """One gateway with two terminals; its daemon is stopped and the terminals closed after."""
    made = make_site(tmp_path, broker, GATEWAY, devices=2)
    try:
        yield made
    finally:
        made.agent.stop()
        for sim in made.terminals.values():
            sim.stop()
