"""SIGKILL during batch inserts: every committed row survives and the file stays consistent."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from buffer import Outbox
from buffer.identity import punch_id
from tests.buffer.children import fork_inserter, read_pipe_line
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches

RUNS = 30


class Ids:
    """Ids of punches 0..n-1 of the default device, computed once and extended as needed."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def upto(self, end: int) -> set[str]:
        if end > len(self.ids):
            more = punches(len(self.ids), end - len(self.ids))
            self.ids.extend(punch_id(GATEWAY, p) for p in more)
        return set(self.ids[:end])

    def reported(self, lines: list[str]) -> set[str]:
        """Ids of every batch reported as committed ("committed <start> <count>")."""
        out: set[str] = set()
        for line in lines:
            if line.startswith("committed "):
                _, first, count = line.split()
                out |= self.upto(int(first) + int(count)) - self.upto(int(first))
        return out


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_committed_row(tmp_path: Path) -> None:
    rng = random.Random(20260302)
    path = tmp_path / "outbox.db"
    reported: list[str] = []
    ids = Ids()
    start = 0
    for run in range(RUNS):
        pid, pipe = fork_inserter(path, start, size=200, seed=run)
        # Kill while it writes: after a random number of reported commits plus a random delay
        # (sometimes before the first commit, while it opens or migrates the file).
        wanted, seen = rng.randint(0, 6), 0
        with pipe:
            while seen < wanted:
                line = read_pipe_line(pipe, timeout=60)
                assert line is not None, f"run {run}: the writer died on its own"
                reported.append(line)
                seen += line.startswith("committed")
            time.sleep(rng.random() * 0.02)
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            # Lines written after a commit but before the kill landed still count.
            reported.extend(pipe.read().splitlines())

        with Outbox.open(path, GATEWAY) as box:
            assert box.recovery is None, box.recovery
            assert box.check() == [], f"run {run}: inconsistent after SIGKILL"
            rows = box.list(limit=1_000_000)
            stored = {r.id for r in rows}
            missing = ids.reported(reported) - stored
            assert not missing, f"run {run}: {len(missing)} committed rows lost"
            seqs = [r.seq for r in rows]
            assert seqs == sorted(seqs) and seqs == list(range(1, len(seqs) + 1))
            # Rows and watermark commit together and batches are contiguous from 0, so the
            # watermark covers exactly the rows stored: never more, never fewer.
            watermark = box.watermark("lobby-1")
            start = 0 if watermark is None else watermark["next"]
            assert stored == ids.upto(start)
    assert start > 1000  # the runs really wrote something
