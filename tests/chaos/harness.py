"""The chaos rig: simulated terminals producing punches, a broker, the agent process, a receiver,
and a scheduler of faults with their undo steps.

Every fault is undone on a schedule and, at the end, all at once; the rig then waits (bounded)
until the receiver holds every punch the terminals recorded.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.localbroker import LocalMosquitto, free_port
from agent.mqtt.options import MqttOptions
from agent.receiver.receiver import Receiver
from agent.receiver.store import SqliteStore
from drivers.zk.simulator.server import ZkSimulator
from tests.daemon.harness import write_config, zk_device
from tests.daemon.process import AgentProcess

GATEWAY = "gw-test"


@dataclass
class Counts:
    """What happened, for the report."""

    agent_kills: int = 0
    agent_starts: int = 0
    broker_restarts: int = 0
    broker_kills: int = 0
    terminal_faults: dict[str, int] = field(default_factory=dict)

    def fault(self, name: str) -> None:
        self.terminal_faults[name] = self.terminal_faults.get(name, 0) + 1


class Terminal:
    """One simulated terminal on a fixed port, with a producer thread of unique punches."""

    def __init__(self, index: int, live: bool, users: int) -> None:
        self.index = index
        self.device_id = f"term-{index}"
        self.live = live
        self.port = free_port()
        self.sim = ZkSimulator(port=self.port, serial=f"CHAOS{index:03d}").start()
        self.user_ids = [f"{index + 1}{n:04d}" for n in range(users)]
        for user_id in self.user_ids:
            self.sim.add_user(user_id)
        self._next = 0
        self._lock = threading.Lock()
        self.running = True

    def punch_next(self) -> bool:
        """Record a punch by the next unused user (so ids never collide); False when out."""
        with self._lock:
            if self._next >= len(self.user_ids):
                return False
            user = self.user_ids[self._next]
            self._next += 1
        return self.sim.punch(user, state=self._next % 2) is not None

    def restart_down(self) -> None:
        self.sim.stop()
        self.running = False

    def restart_up(self) -> None:
        if not self.running:
            self.sim.start()
            self.running = True

    def recorded(self) -> list[tuple[str, str]]:
        """(employee, device time) in log order."""
        return [
            (r.user_id, r.timestamp.isoformat() if r.timestamp else "") for r in self.sim.records
        ]


class ChaosRig:
    """Builds the rig in ``workdir``; ``close()`` tears everything down."""

    def __init__(
        self, workdir: Path, *, terminals: int, users: int, seed: int, punch_gap: float
    ) -> None:
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.punch_gap = punch_gap
        self.counts = Counts()
        self.broker = LocalMosquitto(workdir / "mosquitto").start()
        self.broker_up = True
        self.terminals = [Terminal(i, live=i % 2 == 0, users=users) for i in range(terminals)]
        self.state = workdir / "state"
        self.config = write_config(
            workdir / "punchgate.toml",
            self.state,
            self.broker.url,
            [
                zk_device(t.device_id, t.port, live=t.live, poll_interval=1, timeout=1)
                for t in self.terminals
            ],
            agent={"status_interval": 1, "shutdown_timeout": 5},
            mqtt={"ack": "backend", "ack_timeout": 4, "batch_size": 25, "keepalive": 5},
        )
        self.store = SqliteStore(workdir / "receiver.db")
        options = MqttOptions(
            urls=(self.broker.url,),
            client_id="chaos-receiver",
            keepalive=5,
            connect_timeout=3,
            reconnect_min=0.05,
            reconnect_max=0.5,
        )
        self.receiver = Receiver(options, self.store, name="chaos", validate=True).start()
        self.agent = AgentProcess(self.config, workdir)
        self._stop_producing = threading.Event()
        self._producers: list[threading.Thread] = []
        self._undo: list[tuple[float, str, Callable[[], None]]] = []

    # -- producing ----------------------------------------------------------------------------

    def start(self) -> None:
        self.start_agent()
        for terminal in self.terminals:
            thread = threading.Thread(
                target=self._produce, args=(terminal,), name=f"producer-{terminal.index}"
            )
            thread.start()
            self._producers.append(thread)

    def _produce(self, terminal: Terminal) -> None:
        rng = random.Random(self.rng.random())
        while not self._stop_producing.wait(rng.uniform(0.2, 1.8) * self.punch_gap):
            if not terminal.punch_next():
                return

    def stop_producing(self) -> None:
        self._stop_producing.set()
        for thread in self._producers:
            thread.join(10)

    # -- the agent ----------------------------------------------------------------------------

    def start_agent(self) -> None:
        self.agent.start()
        self.counts.agent_starts += 1

    def kill_agent(self) -> None:
        self.agent.kill()
        self.counts.agent_kills += 1

    # -- faults -------------------------------------------------------------------------------

    def later(self, delay: float, what: str, undo: Callable[[], None]) -> None:
        self._undo.append((time.monotonic() + delay, what, undo))

    def run_due(self, now: float) -> None:
        due = [u for u in self._undo if u[0] <= now]
        self._undo = [u for u in self._undo if u[0] > now]
        for _when, _what, undo in due:
            undo()

    def undo_all(self) -> None:
        pending, self._undo = self._undo, []
        for _when, _what, undo in pending:
            undo()

    def random_action(self, force: str | None = None) -> str:
        """Inflict one random fault (or ``force``: "kill", "broker", ...); schedule its end."""
        rng = self.rng
        choice = (
            force
            or rng.choices(
                ["kill", "broker", "silent", "refuse", "drop", "segment", "restart", "clock"],
                weights=[4, 2, 2, 1, 2, 1, 2, 1],
            )[0]
        )
        if choice == "kill" and self.agent.proc is not None and self.agent.proc.poll() is None:
            self.kill_agent()
            self.later(rng.uniform(0.0, 1.5), "agent start", self.start_agent)
            return "agent SIGKILL"
        if choice == "broker" and self.broker_up:
            if rng.random() < 0.5:
                self.broker.stop()
                self.counts.broker_restarts += 1
                what = "broker stop"
            else:
                self.broker.kill()
                self.counts.broker_kills += 1
                what = "broker SIGKILL"
            self.broker_up = False
            self.later(rng.uniform(0.5, 3.0), "broker start", self._broker_start)
            return what
        terminal = rng.choice(self.terminals)
        faults = terminal.sim.faults
        if choice == "silent" and not faults.silent:
            faults.silent = True
            self.later(rng.uniform(2, 6), "unsilence", lambda: setattr(faults, "silent", False))
        elif choice == "refuse" and not faults.refuse:
            faults.refuse = True
            self.later(rng.uniform(2, 5), "accept", lambda: setattr(faults, "refuse", False))
        elif choice == "drop" and faults.drop_after_bytes is None:
            faults.drop_after_bytes = rng.choice([40, 200, 1000])
            self.later(
                rng.uniform(3, 8), "no drop", lambda: setattr(faults, "drop_after_bytes", None)
            )
        elif choice == "segment" and faults.segmentation == "all":
            faults.segmentation = rng.choice(["frame", "random", "trickle"])
            self.later(rng.uniform(3, 8), "whole", lambda: setattr(faults, "segmentation", "all"))
        elif choice == "restart" and terminal.running:
            terminal.restart_down()
            self.later(rng.uniform(1, 3), "terminal up", terminal.restart_up)
        elif choice == "clock":
            terminal.sim.jump_clock(timedelta(hours=rng.choice([-26, -3, -1, 1, 5])))
        else:
            return "nothing (fault already active)"
        self.counts.fault(choice)
        return f"{terminal.device_id} {choice}"

    @property
    def broker_down_count(self) -> int:
        return self.counts.broker_restarts + self.counts.broker_kills

    def _broker_start(self) -> None:
        self.broker.start()
        self.broker_up = True

    # -- checking -----------------------------------------------------------------------------

    def settle(self) -> None:
        """End every fault; everything up and running."""
        self.undo_all()
        for terminal in self.terminals:
            terminal.sim.faults.silent = False
            terminal.sim.faults.refuse = False
            terminal.sim.faults.drop_after_bytes = None
            terminal.sim.faults.segmentation = "all"
            terminal.restart_up()
        if not self.broker_up:
            self._broker_start()
        if self.agent.proc is None or self.agent.proc.poll() is not None:
            self.start_agent()

    def received(self) -> list[dict[str, Any]]:
        """Every punch in the receiver's database (id, seq, device, employee, device time)."""
        conn = sqlite3.connect(f"file:{self.store.path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT id, seq, device_id, employee, device_time FROM punches ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()
        keys = ("id", "seq", "device_id", "employee", "device_time")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def close(self) -> None:
        self._stop_producing.set()
        self.agent.stop(10)
        self.receiver.stop(5)
        self.store.close()
        for terminal in self.terminals:
            terminal.sim.stop()
        self.broker.stop()

    def stop_agent(self) -> int | None:
        """SIGTERM and the exit code."""
        if self.agent.proc is None:
            return None
        self.agent.signal(signal.SIGTERM)
        return self.agent.wait(30)
