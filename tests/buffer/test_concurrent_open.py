"""A technician's command opening the outbox while the daemon holds a long write transaction."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import pytest

from buffer import Outbox
from config.errors import OutboxError
from tests.buffer.children import ROOT, read_line, start
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punch, punches


@pytest.fixture
def held(outbox_path: Path) -> Iterator[Popen[str]]:
    """An outbox with 10 punches whose write lock another process holds (for up to 60 s)."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 10), watermark={"next": 10})
    holder = start("hold-lock", str(outbox_path), "--seconds", "60")
    try:
        assert read_line(holder, timeout=30) == "locked"
        yield holder
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_reading_commands_work_while_another_process_holds_the_write_lock(
    outbox_path: Path, held: Popen[str]
) -> None:
    """WAL readers never wait for a writer: stats, list, check and status must answer at once,
    not fail on opening with 'migrating the schema failed ... database is locked'."""
    with Outbox.open(outbox_path, GATEWAY, busy_timeout=0.3, recover=False) as box:
        assert box.stats().pending == 10
        assert len(box.list()) == 10 and len(box.next_batch(100)) == 10
        assert box.watermark("lobby-1") == {"next": 10}
        assert box.check() == []


def test_outbox_stats_answers_while_the_daemon_holds_a_long_write_transaction(
    outbox_path: Path, held: Popen[str], tmp_path: Path
) -> None:
    """What the technician sees: the numbers at once, not a 15 s wait and 'database is locked'."""
    config = tmp_path / "punchgate.toml"
    config.write_text(
        f'[agent]\ngateway_id = "{GATEWAY}"\nstate_dir = "{outbox_path.parent}"\n\n'
        "[outbox]\ndisk_reserve_mb = 0\n"
    )
    command = [sys.executable, "-m", "agent.cli", "outbox", "stats", "--json", "-c", str(config)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pending"] == 10


def test_a_write_past_the_busy_timeout_says_what_held_it_and_what_to_do(
    outbox_path: Path, held: Popen[str]
) -> None:
    with Outbox.open(outbox_path, GATEWAY, busy_timeout=0.3, recover=False) as box:
        with pytest.raises(OutboxError) as info:
            box.add_manual(punch(99, device="desk"), operator="tech", reason="forgot badge")
        message = str(info.value)
        assert message.startswith("storing a manual punch failed")
        assert "locked by another process" in message and "retry" in message
        held.kill()  # the daemon's transaction ends: the technician's retry goes through
        held.communicate(timeout=30)
        box.add_manual(punch(99, device="desk"), operator="tech", reason="forgot badge")
        assert box.stats().pending == 11


def test_restore_is_refused_while_another_process_writes_and_allowed_once_it_is_killed(
    outbox_path: Path,
) -> None:
    backup = outbox_path.parent / "site.db"
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 10), watermark={"next": 10})
        box.backup(backup)
    daemon = start("insert", str(outbox_path), "--start", "10", "--batches", "100000")
    try:
        assert read_line(daemon, timeout=30) == "open"
        assert (read_line(daemon, timeout=30) or "").startswith("committed")
        with pytest.raises(OutboxError, match=r"open in another process.*Stop it first"):
            Outbox.restore(backup, outbox_path, GATEWAY)
        line = read_line(daemon, timeout=30) or ""
        assert line.startswith("committed"), line  # the writer never noticed
    finally:
        daemon.kill()  # SIGKILL: its lock goes with it, no close() ran
        daemon.communicate(timeout=30)
    with Outbox.open(outbox_path, GATEWAY, recover=False) as box:
        given_out = box.stats().last_seq
    Outbox.restore(backup, outbox_path, GATEWAY)
    with Outbox.open(outbox_path, GATEWAY) as box:
        assert len(box.list()) == 10 and box.watermark("lobby-1") == {"next": 10}
        stored = box.add_punches(punches(10, 1))
        assert box.get(stored.ids[0]).seq > given_out  # type: ignore[union-attr]
