"""Recovery of a damaged outbox cut by a power cut at each of its steps, then the next start.

Whatever step the cut lands on, the next start must end where an uncut recovery ends: the
same punches (readable rows salvaged, the backup's restored), the same delivery state, no
sequence number given out again, the damaged file kept as found, and the report telling so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from buffer import Outbox
from tests.buffer.test_corruption import _smash_page_holding as smash_page_holding
from tests.crashpoints.outboxes import (
    GATEWAY,
    add_and_die,
    build,
    each_cut,
    fresh_copy,
    open_as_daemon,
    sha,
)


@pytest.mark.parametrize("wal", [False, True], ids=["closed", "crashed-with-wal"])
def test_a_recovery_cut_at_any_step_is_finished_by_the_next_start_losing_nothing(
    tmp_path: Path, wal: bool
) -> None:
    damaged = tmp_path / "damaged"
    build(damaged / "outbox.db")
    if wal:  # the newest punches only in the WAL, cut short (a crash, a bad card)
        add_and_die(damaged / "outbox.db")
        wal_file = damaged / "outbox.db-wal"
        with wal_file.open("r+b") as fh:
            fh.truncate(wal_file.stat().st_size * 4 // 5)  # into the second commit
    else:
        smash_page_holding(damaged / "outbox.db", 300)
    evidence = sha(damaged / "outbox.db")
    expected = open_as_daemon(fresh_copy(damaged, tmp_path / "uncut") / "outbox.db")
    assert expected.recovered and expected.problems == ()
    rows = 500 if wal else 400
    assert 300 < len(expected.ids) < rows  # the lost page or commit; the rest kept
    assert not wal or len(expected.ids) == 450  # the WAL's first commit survives

    path = tmp_path / "cut" / "outbox.db"
    cuts = []
    for where in each_cut(damaged, path.parent, _open_and_close, ticks=20):
        cuts.append(where)
        seen = open_as_daemon(path)
        assert seen.problems == (), where
        assert seen.ids == expected.ids, f"{where}: {len(expected.ids - seen.ids)} punches lost"
        assert seen.delivered == expected.delivered, where
        assert seen.watermarks == expected.watermarks, where  # rewound to the backup's
        assert seen.seq_counter >= expected.seq_counter >= rows, where
        kept = [
            p
            for p in path.parent.glob("outbox.db.corrupt-*")
            if p.name[-4:] not in ("-wal", "-shm")
        ]
        assert any(sha(p) == evidence for p in kept), f"{where}: the damaged file is gone"
        assert not path.with_name("outbox.db.recovering").exists(), where
    assert len(cuts) >= 25, cuts


def _open_and_close(path: Path) -> None:
    Outbox.open(path, GATEWAY, disk_reserve_bytes=0).close()
