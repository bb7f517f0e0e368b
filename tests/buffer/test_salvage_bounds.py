"""Salvage is bounded by the rows a damaged file holds, not by the numbers it claims."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from buffer import Outbox
from buffer.salvage import salvage
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def test_a_garbage_sequence_counter_neither_exhausts_memory_nor_reports_a_made_up_loss(
    outbox_path: Path,
) -> None:
    """A damaged counter cell can read as any number: salvage planned one read per 2048 seqs
    up to it before its work limit applied (10**15 would be a list of 5 * 10**11 ranges), and
    reported every number up to it as unreadable."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as outbox:
        outbox.add_punches(punches(0, 50))
        outbox.add_punches(punches(50, 50))
    conn = sqlite3.connect(outbox_path, isolation_level=None)
    conn.execute("UPDATE counters SET value = ? WHERE name = 'seq'", (10**10,))
    conn.close()
    result = salvage(outbox_path)
    assert result.count == 100 and result.max_seq == 100
    assert result.counter == 10**10
    assert result.unreadable == []
