"""A recovery of a damaged outbox killed half-way (systemd's start timeout, a power cut)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from buffer import Outbox, recovery
from tests.buffer.children import read_pipe_line
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches
from tests.buffer.test_corruption import _smash_page_holding

ROWS, BACKED_UP = 10_000, 7_500


def _damaged(path: Path) -> None:
    """ROWS punches of which BACKED_UP are in a backup; then a page of the newer ones smashed."""
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        for n in range(0, ROWS, 2500):
            if n == BACKED_UP:
                box.backup_rotating(path.parent / "backups", keep=3)
            box.add_punches(punches(n, 2500), watermark={"next": n + 2500})
    _smash_page_holding(path, 8_500)


def _recover_until(path: Path, step: str) -> None:
    """Fork a process that opens (so recovers) ``path``; SIGKILL it when it reaches ``step``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_fd)
            original = getattr(recovery, step)

            def stop_here(*args: Any) -> Any:
                os.write(write_fd, b"reached\n")
                signal.pause()  # killed here by the parent
                return original(*args)

            setattr(recovery, step, stop_here)
            Outbox.open(path, GATEWAY, disk_reserve_bytes=0).close()
        finally:
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        line = read_pipe_line(pipe, timeout=60)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert line == "reached"


@pytest.mark.parametrize("step", ["_salvage_copy", "_merge"])
def test_a_recovery_killed_half_way_is_done_again_at_the_next_start(
    outbox_path: Path, step: str
) -> None:
    """Killed after the damaged file was moved aside, the next start made a new empty outbox:
    every punch (pending ones too) gone from it, seq from 1 again, terminals read from scratch."""
    _damaged(outbox_path)
    _recover_until(outbox_path, step)
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        assert box.recovery is not None, "no recovery: the punches of the damaged file are lost"
        assert box.check() == []
        stored = {r.id for r in box.list(limit=100_000)}
        assert ROWS - 100 < len(stored) < ROWS  # all but about one smashed page
        assert box.watermark("lobby-1") == {"next": BACKED_UP}  # rewound to the backup's
        again = box.add_punches(punches(0, ROWS), watermark={"next": ROWS})
        assert again.inserted == ROWS - len(stored)  # the re-read terminal fills the gap
        new = [box.get(i) for i in again.ids if i not in stored]
        assert min(r.seq for r in new if r is not None) > ROWS  # no seq given out again
    kept = sorted(p.name for p in outbox_path.parent.glob("outbox.db.*-*"))
    assert any(name.startswith("outbox.db.corrupt-") for name in kept), kept


def test_a_recovery_killed_at_every_start_keeps_no_copy_per_attempt(outbox_path: Path) -> None:
    """systemd restarts a daemon killed during recovery every few seconds: the damaged file is
    kept once, and what each attempt left behind (a copy of the backup) is not piled up."""
    _damaged(outbox_path)
    for _ in range(3):
        _recover_until(outbox_path, "_merge")
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        assert box.recovery is not None and box.check() == []
        assert ROWS - 100 < len(box.list(limit=100_000)) < ROWS
    left = sorted(p.name for p in outbox_path.parent.iterdir() if p.name != "backups")
    assert [n for n in left if not n.startswith("outbox.db.corrupt-")] == [
        "outbox.db",
        "outbox.db.backup-lock",
        "outbox.db.lock",
    ]
