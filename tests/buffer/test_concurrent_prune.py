"""Pruning a large delivered backlog while the daemon's other threads keep writing."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

from buffer import Outbox
from buffer.records import utc_now
from tests.buffer.factory import punches

ROWS = 40_000


def test_a_device_worker_stores_punches_between_the_rounds_of_a_long_prune(
    outbox: Outbox,
) -> None:
    """Each round is its own short transaction "so the delivery worker and device workers are
    never blocked for long"; but the outbox's lock was held for the whole prune, so a device
    worker of the daemon waited for all of it (a thousand fsyncs on an SD card)."""
    for n in range(0, ROWS, 10_000):
        outbox.add_punches(punches(n, 10_000))
        outbox.mark_delivered_seqs(range(n + 1, n + 10_001))
    later = utc_now() + timedelta(days=8)  # a week after delivery: all of it is due
    pruned: list[int] = []
    pruner = threading.Thread(target=lambda: pruned.append(outbox.prune(7, batch=40, now=later)))
    reader = sqlite3.connect(outbox.path)
    try:
        pruner.start()
        deadline = time.monotonic() + 30
        while reader.execute("SELECT count(*) FROM punches").fetchone()[0] == ROWS:
            assert time.monotonic() < deadline, "the prune never started"
        stored = outbox.add_punches(punches(ROWS, 1, device="gate-2", serial="SER-G2"))
        assert pruned == [], "the new punch waited for the whole prune"
        assert stored.inserted == 1
    finally:
        pruner.join(timeout=60)
        reader.close()
    assert pruned == [ROWS] and outbox.stats().pending == 1 and outbox.check() == []
