"""The WAL file gives back its space once a long reader that let it grow is gone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from buffer import Outbox
from buffer.database import WAL_SIZE_LIMIT
from tests.buffer.factory import punches


def test_the_wal_shrinks_back_after_a_long_reader_let_it_grow(
    outbox: Outbox, outbox_path: Path
) -> None:
    wal = outbox_path.with_name(outbox_path.name + "-wal")
    # A technician's long `outbox check` or export: checkpoints cannot pass its snapshot.
    reader = sqlite3.connect(outbox_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM punches").fetchone()
    batch = 0
    while wal.stat().st_size <= WAL_SIZE_LIMIT and batch < 400:
        outbox.add_punches(punches(batch * 1000, 1000))
        batch += 1
    assert wal.stat().st_size > WAL_SIZE_LIMIT, "the WAL never grew past the limit"
    reader.execute("ROLLBACK")
    reader.close()
    for more in range(batch, batch + 20):  # checkpoints complete; the WAL starts over
        outbox.add_punches(punches(more * 1000, 1000))
    assert wal.stat().st_size <= WAL_SIZE_LIMIT
    assert outbox.stats().pending == (batch + 20) * 1000
