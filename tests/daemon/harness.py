"""Config files and a supervisor running in a thread, for the daemon tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.daemon.device_pool import DriverFactory
from agent.daemon.supervisor import Supervisor
from agent.sdnotify import Notifier
from config import load_settings

GATEWAY = "gw-test"
PREFIX = "punchgate/v1"


def zk_device(device_id: str, port: int = 4370, **extra: Any) -> dict[str, Any]:
    """A ``[[devices]]`` table for a ZK terminal on loopback."""
    return {"id": device_id, "kind": "zk", "host": "127.0.0.1", "port": port, **extra}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(
    state_dir: Path,
    broker_url: str,
    devices: list[dict[str, Any]],
    *,
    agent: dict[str, Any] | None = None,
    mqtt: dict[str, Any] | None = None,
) -> str:
    """A complete TOML config for a test gateway."""
    agent_keys = {
        "gateway_id": GATEWAY,
        "site": "Test site",
        "state_dir": str(state_dir),
        "status_interval": 0.2,
        "shutdown_timeout": 5,
        **(agent or {}),
    }
    mqtt_keys = {"url": broker_url, "reconnect_min": 0.1, "reconnect_max": 1, **(mqtt or {})}
    lines = ["[agent]"] + [f"{k} = {_value(v)}" for k, v in agent_keys.items()]
    lines += ["", "[mqtt]"] + [f"{k} = {_value(v)}" for k, v in mqtt_keys.items()]
    for device in devices:
        lines += ["", "[[devices]]"] + [f"{k} = {_value(v)}" for k, v in device.items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, *args: Any, **kwargs: Any) -> Path:
    path.write_text(config_text(*args, **kwargs), encoding="utf-8")
    return path


class RunningSupervisor:
    """A supervisor whose ``run()`` executes in a background thread."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="supervisor-main", daemon=True)

    def _main(self) -> None:
        try:
            self.exit_code = self.supervisor.run(install_signals=False)
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float) -> bool:
        self.supervisor.request_stop()
        self.thread.join(timeout)
        return not self.thread.is_alive()


@contextmanager
def running(
    config: Path,
    factory: DriverFactory,
    *,
    notifier: Notifier | None = None,
    **kwargs: Any,
) -> Iterator[RunningSupervisor]:
    """Start a supervisor on ``config`` in a thread; stop it (bounded) on exit."""
    settings = load_settings(config)
    supervisor = Supervisor(
        settings,
        config_path=config,
        notifier=notifier or Notifier({}),
        driver_factory=factory,
        worker_options={"live_chunk": 0.1, **kwargs.pop("worker_options", {})},
        **kwargs,
    )
    handle = RunningSupervisor(supervisor)
    handle.thread.start()
    try:
        yield handle
    finally:
        if handle.thread.is_alive():
            handle.stop(settings.agent.shutdown_timeout + 5)
