"""Outbox stats while a terminal's full log (100,000 records) is being stored.

After a month-long WAN outage a terminal's first read hands the outbox 100,000 punches in one
batch: one transaction of ~2.7 s here (tens of seconds on a gateway), 40 of them when every
terminal is read again at once. The daemon writes its status (``Outbox.stats``) on the thread
that also feeds the systemd watchdog: a stats read that waits for those batches stops the pings,
and systemd kills the daemon in the middle of the reads it would then do again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from buffer import Outbox
from buffer.records import AddResult
from tests.buffer.factory import punches

FULL_LOG = 100_000
DEADLINE_S = 15.0


def _writer_holds_the_write_lock(path: Path) -> bool:
    """Whether some connection is inside a write transaction now (a probe that never waits)."""
    probe = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return True
        raise
    else:
        probe.execute("ROLLBACK")
        return False
    finally:
        probe.close()


def test_stats_do_not_wait_for_a_full_terminal_log_being_stored(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 3, device="gate-1", serial="S-GATE-1"))  # already there
    batch = punches(1000, FULL_LOG, device="lobby-1", serial="S-LOBBY-1")
    results: list[AddResult] = []
    store = threading.Thread(
        target=lambda: results.append(
            outbox.add_punches(batch, watermark={"count": FULL_LOG}, device_serial="S-LOBBY-1")
        )
    )
    store.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not _writer_holds_the_write_lock(outbox.path):
            assert store.is_alive() and time.monotonic() < deadline, "the batch never started"
        stats = outbox.stats()
        # Read while the batch's transaction was open: the stats of the last commit, at once.
        assert store.is_alive(), "stats waited for the whole 100,000-punch batch"
        assert stats.pending == 3
    finally:
        store.join(DEADLINE_S)
    assert not store.is_alive() and results[0].inserted == FULL_LOG
    assert outbox.stats().pending == 3 + FULL_LOG
