"""``punchgate run`` while its peers go silent: one terminal that accepts and never answers,
and a broker whose link freezes mid-drain. The healthy terminal's punches keep being stored,
and SIGTERM still ends the daemon well within systemd's TimeoutStopSec (30 s)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.localbroker import LocalMosquitto
from tests.daemon.process import AgentProcess
from tests.drivers.zk.driver_support import local_now, simulator
from tests.silent.peers import Relay, SilentListener
from tests.support.wait import wait_for


def _stored(outbox: Path, device: str) -> int:
    try:
        with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5) as db:
            sql = "SELECT count(*) FROM punches WHERE device_id = ?"
            return int(db.execute(sql, (device,)).fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow  # a daemon, a simulator and a broker: about 10 s
def test_the_daemon_keeps_storing_and_stops_in_time_while_a_terminal_and_the_broker_are_silent(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    with (
        simulator(users=3, records=10) as sim,
        SilentListener() as silent,
        Relay(broker.port) as link,
    ):
        config = tmp_path / "punchgate.toml"
        state = tmp_path / "state"
        config.write_text(
            f"""
[agent]
gateway_id = "gw-silent"
state_dir = "{state}"
timezone = "Europe/Berlin"

[outbox]
disk_reserve_mb = 0

[mqtt]
url = "mqtt://127.0.0.1:{link.port}"
keepalive = 5
connect_timeout = 2
reconnect_min = 0.1
reconnect_max = 1

[[devices]]
id = "good-1"
kind = "zk"
host = "127.0.0.1"
port = {sim.port}
timeout = 2
poll_interval = 1

[[devices]]
id = "hung-1"
kind = "zk"
host = "127.0.0.1"
port = {silent.port}
timeout = 5
poll_interval = 1
""",
            encoding="utf-8",
        )
        agent = AgentProcess(config, tmp_path).start()
        try:
            outbox = state / "outbox.db"
            wait_for(lambda: _stored(outbox, "good-1") == 10, timeout=15, what="the first poll")
            link.freeze()  # mid-drain: the broker neither reads nor answers any more
            user = sim.users[0].user_id
            sim.punch(user, when=local_now())
            wait_for(lambda: _stored(outbox, "good-1") == 11, timeout=10, what="a new punch")
            began = time.monotonic()
            code = agent.stop(timeout=30)
            took = time.monotonic() - began
        finally:
            agent.kill()
        assert code == 0, agent.tail()
        # shutdown_timeout (10 s by default) bounds it, far inside TimeoutStopSec (30 s).
        assert took < 10 + 3, f"SIGTERM took {took:.1f}s with a silent terminal and broker"
