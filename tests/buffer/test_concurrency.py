"""The daemon and CLI commands write the same outbox at once without "database is locked"."""

from __future__ import annotations

import threading
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


def test_threads_of_one_process_share_one_outbox_safely(outbox: Outbox) -> None:
    """Device workers and the delivery worker of the daemon use one Outbox from threads."""
    errors: list[BaseException] = []

    def device(index: int) -> None:
        try:
            for n in range(0, 300, 30):
                outbox.add_punches(punches(n, 30, device=f"dev-{index}", serial=f"SER-{index}"))
        except BaseException as exc:  # reported below, a thread cannot fail the test
            errors.append(exc)

    def deliver() -> None:
        try:
            for _ in range(200):
                batch = outbox.next_batch(50)
                outbox.mark_sent([r.id for r in batch])
                outbox.mark_delivered([r.id for r in batch])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=deliver))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert errors == []
    stats = outbox.stats()
    assert stats.pending + stats.delivered == 1200 and stats.last_seq == 1200
    assert outbox.check() == []


def test_close_is_idempotent_and_a_closed_outbox_says_so(outbox_path: Path) -> None:
    box = Outbox.open(outbox_path, GATEWAY)
    box.add_punches(punches(0, 3))
    box.close()
    box.close()
    with pytest.raises(OutboxError, match="closed"):
        box.next_batch(10)
    assert not outbox_path.with_name("outbox.db-wal").exists()  # checkpointed on close
    with Outbox.open(outbox_path, GATEWAY) as again:
        assert again.stats().pending == 3
