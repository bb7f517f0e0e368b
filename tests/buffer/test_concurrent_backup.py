"""Backups taken at the same time by two processes: the daemon's daily one and a technician's."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import pwd
from collections.abc import Callable
from functools import partial
from multiprocessing.queues import Queue
from pathlib import Path

import pytest

from buffer import Outbox, inspect_backup, list_backups
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches

ROUNDS = 4
ROWS = 10_000  # enough that one copy takes a few milliseconds: the two copies overlap

_FORK = multiprocessing.get_context("fork")


def _worker(
    db: Path, call: Callable[[Outbox], Path], start: multiprocessing.synchronize.Barrier, out: Queue
) -> None:
    try:
        with Outbox.open(db, GATEWAY, disk_reserve_bytes=0) as box:
            start.wait(30)
            out.put(("ok", str(call(box))))
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _race(db: Path, call: Callable[[Outbox], Path]) -> list[tuple[str, str]]:
    """``call(outbox)`` in two processes released together; their results."""
    start = _FORK.Barrier(2)
    out: Queue = _FORK.Queue()
    procs = [_FORK.Process(target=_worker, args=(db, call, start, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return results


def _filled(db: Path) -> Path:
    with Outbox.open(db, GATEWAY, disk_reserve_bytes=0) as box:
        for n in range(0, ROWS, 5000):
            box.add_punches(punches(n, 5000))
    return db


def test_two_backups_to_the_same_file_at_once_both_succeed(outbox_path: Path) -> None:
    db = _filled(outbox_path)
    dest = outbox_path.parent / "usb" / "outbox-site.db"
    for round_ in range(ROUNDS):
        results = _race(db, partial(Outbox.backup, dest=dest))
        assert results == [("ok", str(dest))] * 2, f"round {round_}: {results}"
        assert inspect_backup(dest).rows == ROWS  # whichever rename came last: a whole copy
        assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no leftovers


@pytest.mark.parametrize("keep", [1, 2])
def test_two_rotating_backups_at_once_keep_the_newest_and_remove_the_old_ones(
    outbox_path: Path, keep: int
) -> None:
    """The daemon's daily backup and ``punchgate outbox backup`` at once: with keep=1 each
    deleted the other's new copy (none left); both removing one old copy made one fail."""
    db = _filled(outbox_path)
    for round_ in range(ROUNDS):
        directory = outbox_path.parent / f"backups-{round_}"
        with Outbox.open(db, GATEWAY, disk_reserve_bytes=0) as box:
            old = [box.backup_rotating(directory, keep=10) for _ in range(3)]
        results = _race(db, partial(Outbox.backup_rotating, directory=directory, keep=keep))
        assert [r[0] for r in results] == ["ok", "ok"], f"round {round_}: {results}"
        kept = list_backups(directory)
        assert kept[0] == max(Path(r[1]) for r in results), f"round {round_}: {kept}"
        assert len(kept) == keep and not set(old) & set(kept)
        assert inspect_backup(kept[0]).rows == ROWS


def test_a_backup_killed_half_way_leaves_nothing_behind_after_the_next_one(
    outbox_path: Path,
) -> None:
    """Each process copies to ``<dest>.partial-<pid>``: one SIGKILLed is cleaned up later."""
    db = _filled(outbox_path)
    dest = outbox_path.parent / "usb" / "outbox-site.db"
    gone = _FORK.Process(target=os.getpid)
    gone.start()
    gone.join(timeout=30)
    dest.parent.mkdir()
    stale = dest.with_name(f"{dest.name}.partial-{gone.pid}")
    stale.write_bytes(b"SQLite format 3\x00 cut short by a power cut")
    other = dest.with_name(f"{dest.name}.partial-{os.getpid()}x")  # not ours: left alone
    other.write_text("a technician's file")
    with Outbox.open(db, GATEWAY, disk_reserve_bytes=0) as box:
        box.backup(dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted([dest.name, other.name])
    assert inspect_backup(dest).rows == ROWS


def test_the_rotation_lock_a_root_cli_creates_belongs_to_the_service_user(tmp_path: Path) -> None:
    """``sudo punchgate outbox backup`` must not leave a lock the daemon cannot open."""
    state = tmp_path / "state"
    state.mkdir()
    expected = os.geteuid()
    if expected == 0:  # as root (technicians use sudo), files go to the directory's owner
        nobody = pwd.getpwnam("nobody")
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        expected = nobody.pw_uid
    with Outbox.open(state / "outbox.db", GATEWAY, disk_reserve_bytes=0) as box:
        box.backup_rotating(tmp_path / "backups", keep=1)
    assert (state / "outbox.db.backup-lock").stat().st_uid == expected
