"""A site: many simulated ZK terminals on loopback, one config, the real supervisor and wiring."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from agent.localbroker import LocalMosquitto
from agent.wiring import build_driver
from drivers.zk.simulator.server import ZkSimulator
from tests.daemon.harness import RunningSupervisor, running, write_config, zk_device


class Site:
    """``count`` terminals ``t00``.. each with one user ``<index+1>001`` and its own serial."""

    def __init__(self, stack: ExitStack, count: int, record_capacity: int = 100_000) -> None:
        self.sims: dict[str, ZkSimulator] = {}
        for index in range(count):
            sim = ZkSimulator(serial=f"FLEET{index:03d}", record_capacity=record_capacity).start()
            stack.callback(sim.stop)
            sim.add_user(self.user(index))
            self.sims[f"t{index:02d}"] = sim

    @staticmethod
    def user(index: int) -> str:
        return f"{index + 1}001"

    def devices(self, **extra: Any) -> list[dict[str, Any]]:
        return [zk_device(d, sim.port, **extra) for d, sim in self.sims.items()]


@contextmanager
def terminals(count: int, record_capacity: int = 100_000) -> Iterator[Site]:
    """``count`` simulated terminals, stopped on exit."""
    with ExitStack() as stack:
        yield Site(stack, count, record_capacity)


@contextmanager
def site(
    tmp_path: Path,
    broker: LocalMosquitto,
    count: int,
    *,
    device: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
    worker_options: dict[str, Any] | None = None,
    record_capacity: int = 100_000,
) -> Iterator[tuple[Site, RunningSupervisor, Path]]:
    """Start ``count`` terminals and a supervisor polling them all through the real wiring."""
    with terminals(count, record_capacity) as fleet:
        config = write_config(
            tmp_path / "punchgate.toml",
            tmp_path / "state",
            broker.url,
            fleet.devices(**(device or {})),
            agent=agent,
        )
        with running(config, build_driver, worker_options=worker_options or {}) as handle:
            yield fleet, handle, config


def stall(
    calls: list[str], name: str, release: threading.Event, seconds: float
) -> Callable[[Any], Any]:
    """For ``ZkSimulator.intercept``: each answer waits ``seconds`` (or until ``release``)."""

    def wrap(usual: Any) -> Any:
        def answer(session: Any, packet: Any) -> Any:
            calls.append(name)
            release.wait(seconds)  # bounded; tests set it before the terminals stop
            return usual(session, packet)

        return answer

    return wrap
