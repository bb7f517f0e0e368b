"""``punchgate status`` while the daemon runs: what a technician reads about the broker."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.daemon.status_file import write_status
from tests.cli.conftest import GATEWAY, cli


def _live(broker: dict[str, Any]) -> dict[str, Any]:
    """A live status as the running daemon writes it (this process stands in for it)."""
    return {
        "pid": os.getpid(),
        "updated_unix": time.time(),
        "interval_s": 5,
        "boot": 3,
        "started_at": "2026-11-22T08:00:00+00:00",
        "healthy": False,
        "unhealthy": ["broker"],
        "gateway_id": GATEWAY,
        "site": "Plant 1",
        "broker": broker,
        "backlog": 42,
        "oldest_pending_age_s": 95.0,
        "devices": [],
        "last_errors": [],
    }


def test_status_says_how_long_the_agent_has_been_retrying_a_broker_that_is_down(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    config = make_config()
    down = {
        "connected": False,
        "broker_url": None,
        "last_error": "cannot connect to mqtt://127.0.0.1:1883: connection refused",
        "delivered": 10,
        "in_flight": 0,
        "reconnect_attempts": 7,
    }
    write_status(tmp_path / "state", _live(down))
    shown = cli("status", "--config", str(config))
    assert shown.code == 0, shown.stderr
    broker = next(line for line in shown.stdout.splitlines() if line.startswith("broker"))
    assert "DISCONNECTED (retrying: attempt 7)" in broker
    assert "connection refused" in broker and "backlog 42" in shown.stdout


def test_status_of_a_connected_broker_mentions_no_retries(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    config = make_config()
    up = {"connected": True, "broker_url": "mqtt://127.0.0.1:1883", "reconnect_attempts": 0}
    write_status(tmp_path / "state", _live(up))
    shown = cli("status", "--config", str(config))
    broker = next(line for line in shown.stdout.splitlines() if line.startswith("broker"))
    assert "connected mqtt://127.0.0.1:1883" in broker and "retrying" not in broker
