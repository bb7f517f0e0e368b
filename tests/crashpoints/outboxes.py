"""Outboxes to cut operations on, and what a daemon-style open finds in them afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from buffer import Outbox
from tests.buffer.factory import punches
from tests.crashpoints.steps import fork_cut

GATEWAY = "gw-test"
MAX_STEPS = 200  # bound on the steps walked through for one operation


def build(path: Path, rows: int = 400, backup: bool = True) -> None:
    """``rows`` punches, the first half backed up (a third of them delivered); closed cleanly."""
    half = rows // 2
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, half), watermark={"next": half})
        box.mark_delivered([r.id for r in box.next_batch(half // 3)])
        if backup:
            box.backup_rotating(path.parent / "backups", keep=3)
        box.add_punches(punches(half, rows - half), watermark={"next": rows})
        box.mark_delivered([r.id for r in box.next_batch(half // 3, after_seq=half)])


def sha(path: Path) -> str:
    """The file's content hash."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fresh_copy(state: Path, into: Path) -> Path:
    """A copy of the state directory ``state`` at ``into`` (replacing what was there)."""
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(state, into)
    return into


@dataclass(frozen=True)
class Seen:
    """What a daemon-style open found."""

    ids: frozenset[str]
    delivered: frozenset[str]
    max_seq: int
    seq_counter: int
    recovered: bool
    problems: tuple[str, ...]
    watermarks: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return (
            f"Seen({len(self.ids)} rows, {len(self.delivered)} delivered, max seq {self.max_seq}, "
            f"counter {self.seq_counter}, recovered {self.recovered}, problems {self.problems}, "
            f"watermarks {self.watermarks})"
        )


def open_as_daemon(path: Path) -> Seen:
    """Open ``path`` as the daemon does (recovering damage) and describe it."""
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        rows = box.list(limit=1_000_000)
        stats = box.stats()
        return Seen(
            ids=frozenset(r.id for r in rows),
            delivered=frozenset(r.id for r in rows if r.delivery == "delivered"),
            max_seq=max((r.seq for r in rows), default=0),
            seq_counter=stats.last_seq,
            recovered=box.recovery is not None,
            problems=tuple(box.check()),
            watermarks=tuple((d.device_id, str(d.watermark)) for d in stats.devices),
        )


def each_cut(
    state: Path, scratch: Path, operation: Callable[[Path], object], ticks: int = 0
) -> Iterator[str]:
    """Cut ``operation`` (given the outbox path) before each of its file steps in turn, then
    at ``ticks`` points spread over its SQL work (see ``steps.arm``).

    Each run works on a fresh copy of the state directory ``state`` at ``scratch``; yields
    where it was cut, for the caller to look at ``scratch / "outbox.db"`` (then the next cut).
    """
    path = scratch / "outbox.db"

    def run() -> None:
        operation(path)

    for at in range(1, MAX_STEPS):
        fresh_copy(state, scratch)
        cut = fork_cut(run, at=at)
        if cut.startswith("DONE"):
            break
        yield f"cut before step {cut}"
    else:
        raise AssertionError(f"the operation still had steps after {MAX_STEPS}")
    if not ticks:
        return
    total = int(cut.split()[2])
    assert total >= ticks, f"only {total} SQL ticks: make the operation do more work"
    for n in range(ticks):
        fresh_copy(state, scratch)
        cut = fork_cut(run, tick=1 + n * total // ticks)
        if cut.startswith("PAUSED"):  # else this run did less SQL work: finished uncut
            yield f"cut at {cut}"


def add_and_die(path: Path) -> None:
    """100 more punches by a process that then dies without closing (no checkpoint)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            box = Outbox.open(path, GATEWAY, disk_reserve_bytes=0)
            box.add_punches(punches(400, 50), watermark={"next": 450})
            box.add_punches(punches(450, 50), watermark={"next": 500})
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
