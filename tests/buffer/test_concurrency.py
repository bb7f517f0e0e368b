"""The daemon and CLI commands write the same outbox at once without "database is locked"."""

from __future__ import annotations

from pathlib import Path

import pytest

from buffer import Outbox
from config.errors import OutboxError
from tests.buffer.children import committed_ids, read_line, run_to_end, start
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punch, punches


def test_two_processes_and_this_one_write_at_the_same_time(outbox_path: Path) -> None:
    Outbox.open(outbox_path, GATEWAY).close()  # created before the writers race
    daemon = start("insert", str(outbox_path), "--batches", "40", "--size", "50")
    cli = start("manual", str(outbox_path), "--count", "40")
    with Outbox.open(outbox_path, GATEWAY) as box:
        mine = [
            box.add_punches([punch(n, device="gate-2", serial="SER-G2")]).ids[0] for n in range(40)
        ]
        daemon_lines = run_to_end(daemon)
        cli_lines = run_to_end(cli)
        stored = {r.id for r in box.list(limit=10_000)}
        assert committed_ids(daemon_lines) <= stored
        assert {line.split()[1] for line in cli_lines if line.startswith("manual ")} <= stored
        assert set(mine) <= stored
        rows = box.list(limit=10_000)
        assert len(rows) == 40 * 50 + 40 + 40
        assert len({r.seq for r in rows}) == len(rows)  # one number each, never shared
        assert box.stats().pending == len(rows) and box.check() == []


def test_a_writer_waits_for_a_long_transaction_of_another_process(outbox_path: Path) -> None:
    with Outbox.open(outbox_path, GATEWAY, busy_timeout=20.0) as box:
        holder = start("hold-lock", str(outbox_path), "--seconds", "0.5")
        assert read_line(holder, timeout=30) == "locked"
        result = box.add_punches(punches(0, 3))  # blocks until the other commits
        assert result.inserted == 3
        run_to_end(holder)


def test_a_lock_held_past_the_busy_timeout_gives_a_clear_error(outbox_path: Path) -> None:
    with Outbox.open(outbox_path, GATEWAY, busy_timeout=0.2) as box:
        holder = start("hold-lock", str(outbox_path), "--seconds", "30")
        assert read_line(holder, timeout=30) == "locked"
        with pytest.raises(OutboxError, match="locked by another process") as info:
            box.add_punches(punches(0, 3))
        assert "retry" in str(info.value)
        holder.kill()  # a killed holder's lock goes with it
        holder.communicate(timeout=30)
        assert box.add_punches(punches(0, 3)).inserted == 3  # fine once released
