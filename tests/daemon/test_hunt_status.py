"""The status file against pid reuse: a dead daemon's pid handed to another process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.daemon.live_status import status_document
from agent.daemon.status_file import read_status, write_status


def _document() -> dict[str, object]:
    return status_document(
        state="running",
        started_at="2026-01-01T00:00:00+00:00",
        interval=15.0,
        gateway_id="gw-1",
        site="",
        version="0",
        boot=1,
        config=None,
        healthy=True,
        unhealthy=[],
        snapshots=[],
        outbox=None,
        broker=None,
        maintenance=None,
        errors=[],
    )


def test_a_fresh_status_whose_pid_now_belongs_to_another_process_is_not_running(
    tmp_path: Path,
) -> None:
    doc = _document()
    write_status(tmp_path, doc)
    mine = read_status(tmp_path)
    assert mine is not None and mine["running"]  # the writer itself: running
    # The daemon was killed (the watchdog's SIGABRT) and the kernel gave its pid to another
    # program before the restarted daemon wrote its first status.
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        write_status(tmp_path, {**doc, "pid": other.pid})
        reused = read_status(tmp_path)
        assert reused is not None and reused["fresh"]
        assert not reused["pid_alive"] and not reused["running"]
    finally:
        other.kill()
        other.wait(10)
