"""Single-transaction operations cut at their file steps and at points inside their SQL.

Each is all or nothing: the next daemon-style open finds the outbox exactly as before the
operation or exactly as after it, consistent (``check``), with the numbering never going back.
Prune works round by round: a cut keeps every pending punch and the next prune finishes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from buffer import Outbox
from buffer.records import utc_now
from tests.buffer.factory import punches
from tests.buffer.test_migrations import _database_at
from tests.crashpoints.outboxes import GATEWAY, Seen, build, each_cut, fresh_copy, open_as_daemon

TICKS = 12


def _with(path: Path, use: Callable[[Outbox], object]) -> None:
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        use(box)


def _outcomes(state: Path, scratch: Path, operation: Callable[[Path], object]) -> tuple[Seen, Seen]:
    """What the outbox holds before and after ``operation`` runs uncut."""
    before = open_as_daemon(fresh_copy(state, scratch) / "outbox.db")
    operation(fresh_copy(state, scratch) / "outbox.db")
    after = open_as_daemon(scratch / "outbox.db")
    shutil.rmtree(scratch)
    return before, after


def _shape(seen: Seen) -> tuple[object, ...]:
    """What two runs of an operation giving random ids (manual punches, voids) share."""
    return (len(seen.ids), len(seen.delivered), seen.max_seq, seen.seq_counter, seen.problems)


def _all_or_nothing(
    tmp_path: Path,
    operation: Callable[[Path], object],
    key: Callable[[Seen], object] = lambda seen: seen,
) -> None:
    state = tmp_path / "state"
    build(state / "outbox.db")
    before, after = _outcomes(state, tmp_path / "cut", operation)
    assert before != after, "the operation changes nothing: the test proves nothing"
    cuts = 0
    for where in each_cut(state, tmp_path / "cut", operation, ticks=TICKS):
        cuts += 1
        seen = open_as_daemon(tmp_path / "cut" / "outbox.db")
        assert seen.problems == (), where
        assert key(seen) in (key(before), key(after)), f"{where}: {seen}, not {before} / {after}"
    assert cuts >= TICKS // 2


def test_marking_delivered_cut_anywhere_is_all_or_nothing(tmp_path: Path) -> None:
    def mark(path: Path) -> None:
        _with(path, lambda box: box.mark_delivered([r.id for r in box.next_batch(150)]))

    _all_or_nothing(tmp_path, mark)


def test_redeliver_cut_anywhere_is_all_or_nothing(tmp_path: Path) -> None:
    _all_or_nothing(tmp_path, lambda path: _with(path, lambda box: box.redeliver_from(50)))


def test_a_punch_import_cut_anywhere_is_all_or_nothing(tmp_path: Path) -> None:
    entries = [(p, "paper sheet") for p in punches(1000, 120)]
    _all_or_nothing(
        tmp_path,
        lambda path: _with(path, lambda box: box.add_manual_many(entries, operator="tech")),
        _shape,
    )


def test_a_void_cut_anywhere_is_all_or_nothing(tmp_path: Path) -> None:
    def void(path: Path) -> None:
        _with(path, lambda box: box.add_void(box.list(limit=1)[0].id, operator="t", reason="x"))

    _all_or_nothing(tmp_path, void, _shape)


def test_a_migration_from_v1_cut_anywhere_is_done_again_by_the_next_open(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _database_at(state / "outbox.db", 1)
    _, after = _outcomes(state, tmp_path / "cut", lambda path: _with(path, lambda box: None))
    assert len(after.ids) == 5 and len(after.delivered) == 2
    cuts = 0
    for where in each_cut(state, tmp_path / "cut", lambda p: _with(p, lambda b: None), TICKS):
        cuts += 1
        assert open_as_daemon(tmp_path / "cut" / "outbox.db") == after, where
    assert cuts >= 3


def test_a_prune_cut_anywhere_keeps_every_pending_punch_and_the_next_prune_finishes(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    build(state / "outbox.db")
    later = utc_now() + timedelta(days=2)

    def prune(path: Path) -> None:
        _with(path, lambda box: box.prune(1, batch=20, now=later))

    before, after = _outcomes(state, tmp_path / "cut", prune)
    pending = before.ids - before.delivered
    assert after.ids == pending and before.delivered  # the uncut prune removes the delivered
    cuts = 0
    for where in each_cut(state, tmp_path / "cut", prune, ticks=TICKS):
        cuts += 1
        seen = open_as_daemon(tmp_path / "cut" / "outbox.db")
        assert seen.problems == () and seen.ids >= pending, where
        assert seen.seq_counter == before.seq_counter, where
        prune(tmp_path / "cut" / "outbox.db")
        assert open_as_daemon(tmp_path / "cut" / "outbox.db") == after, where
    assert cuts >= TICKS // 2


def test_a_terminal_log_stored_in_chunks_and_cut_is_completed_by_reading_it_again(
    tmp_path: Path,
) -> None:
    from agent.daemon.outbox_sink import store_in_chunks

    log = punches(400, 600)

    def store(path: Path) -> None:
        def read(box: Outbox) -> None:
            store_in_chunks(
                box,
                log,
                100,
                device_id="lobby-1",
                watermark={"next": 1000},
                serial=None,
                progress=lambda: None,
            )

        _with(path, read)

    state = tmp_path / "state"
    build(state / "outbox.db")
    before, after = _outcomes(state, tmp_path / "cut", store)
    assert len(after.ids) == 1000
    cuts = 0
    for where in each_cut(state, tmp_path / "cut", store, ticks=TICKS):
        cuts += 1
        path = tmp_path / "cut" / "outbox.db"
        with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
            watermark = box.watermark("lobby-1")
            rows = box.list(limit=10_000)
        seen = open_as_daemon(path)
        assert seen.problems == () and seen.ids >= before.ids, where
        if watermark == {"next": 1000}:  # the log may be cleared now: all of it is stored
            assert seen.ids == after.ids, f"{where}: the watermark covers punches not stored"
        else:
            assert watermark == {"next": 400}, where
        seqs = [r.seq for r in rows]
        assert len(seqs) == len(set(seqs)), where
        store(path)  # the terminal is read again from the old watermark
        again = open_as_daemon(path)
        assert again.ids == after.ids and again.seq_counter >= seen.seq_counter, where
    assert cuts >= TICKS // 2
