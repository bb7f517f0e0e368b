"""``outbox restore`` cut by a power cut at each of its steps, then the daemon's next start.

The next start must find either the old outbox or the restored one, never an empty new one:
an empty one numbers punches from 1 again and leaves every pending punch of the old file
undelivered in a file nobody reads.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from buffer import Outbox
from buffer.backup import inspect_backup, list_backups
from tests.crashpoints.outboxes import (
    GATEWAY,
    add_and_die,
    build,
    each_cut,
    fresh_copy,
    open_as_daemon,
)


@pytest.mark.parametrize("wal", [False, True], ids=["stopped", "crashed-with-wal"])
def test_a_restore_cut_at_any_step_leaves_the_old_or_the_restored_outbox_never_an_empty_one(
    tmp_path: Path, wal: bool
) -> None:
    state = tmp_path / "state"
    build(state / "outbox.db")
    rows = 400
    if wal:  # the daemon died (power cut) before the technician restores: its WAL is there
        add_and_die(state / "outbox.db")
        rows = 500
    backup = list_backups(state / "backups")[0]
    before = open_as_daemon(fresh_copy(state, tmp_path / "peek") / "outbox.db")
    assert len(before.ids) == rows and before.seq_counter == rows

    path = tmp_path / "cut" / "outbox.db"
    cuts = []
    for where in each_cut(state, path.parent, partial(_restore, backup.name), ticks=20):
        cuts.append(where)
        seen = open_as_daemon(path)
        assert seen.problems == (), where
        assert len(seen.ids) in (200, rows), f"{where}: {len(seen.ids)} punches in the outbox"
        if len(seen.ids) == 200:  # restored: the old file is kept beside it
            assert list(path.parent.glob("outbox.db.replaced-*")), where
        assert seen.seq_counter >= rows, f"{where}: numbering starts again at {seen.seq_counter}"
        left = [p.name for p in path.parent.iterdir() if p.name.endswith((".restoring", "-note"))]
        assert left == [], f"{where}: a full copy of the backup left for ever: {left}"
    assert len(cuts) >= 20, cuts


def _restore(name: str, path: Path) -> None:
    Outbox.restore(path.parent / "backups" / name, path, GATEWAY)


def test_a_restore_cut_at_any_step_and_run_again_restores_keeping_the_old_file(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    build(state / "outbox.db")
    backup = list_backups(state / "backups")[0]
    path = tmp_path / "cut" / "outbox.db"
    cuts = 0
    for where in each_cut(state, path.parent, partial(_restore, backup.name)):
        cuts += 1
        _restore(backup.name, path)  # the technician runs it again
        seen = open_as_daemon(path)
        assert len(seen.ids) == 200 and seen.problems == (), f"{where}: {seen}"
        assert seen.seq_counter >= 400, f"{where}: numbering starts again at {seen.seq_counter}"
        kept = [
            inspect_backup(p).rows
            for p in path.parent.glob("outbox.db.replaced-*")
            if p.name[-4:] not in ("-wal", "-shm")
        ]
        assert 400 in kept, f"{where}: the old outbox is gone ({kept})"
    assert cuts >= 3
