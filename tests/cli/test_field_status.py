"""`punchgate status` while the daemon runs, on a site where something is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.daemon.status_file import write_status
from tests.cli.conftest import cli
from tests.cli.test_status import _live


def test_live_status_says_the_disk_is_low(tmp_path: Path, make_config: Callable[..., Path]) -> None:
    """The outbox's own view said DISK LOW; the running daemon's view kept quiet about it."""
    config = make_config()
    live = _live({"connected": True, "broker_url": "mqtt://127.0.0.1:1883"})
    live["outbox"] = {"pending": 42, "disk_alarm": True, "free_disk_bytes": 1024}
    write_status(tmp_path / "state", live)
    shown = cli("status", "--config", str(config))
    assert shown.code == 0, shown.stderr
    outbox = next(line for line in shown.stdout.splitlines() if line.startswith("outbox"))
    assert "DISK LOW" in outbox
