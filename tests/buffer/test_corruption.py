"""Damage to the outbox file: detected at open, quarantined, restored, salvaged, reported."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from buffer import Outbox
from buffer.database import shm_path, wal_path
from buffer.identity import punch_id
from buffer.recovery import SEQ_GAP_AFTER_LOSS
from config.errors import CorruptOutboxError
from tests.buffer.children import run_to_end, start
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punch, punches

PAGE = 4096


def _build(path: Path, backup: bool = True) -> None:
    """4000 punches: 2000 (500 delivered) before a backup, 2000 after; closed cleanly."""
    with Outbox.open(path, GATEWAY) as box:
        for n in range(0, 2000, 500):
            box.add_punches(punches(n, 500), watermark={"next": n + 500})
        box.mark_delivered([r.id for r in box.next_batch(500)])
        if backup:
            box.backup_rotating(path.parent / "backups", keep=3)
        for n in range(2000, 4000, 500):
            box.add_punches(punches(n, 500), watermark={"next": n + 500})
        box.mark_delivered([r.id for r in box.next_batch(100, after_seq=3000)])


def _smash_page_holding(path: Path, n: int) -> int:
    """Overwrite, with random bytes, the table page that holds punch ``n``; return its number."""
    data = bytearray(path.read_bytes())
    # The row stores the id followed by the gateway id; the id index stores the id alone.
    offset = data.find(punch_id(GATEWAY, punch(n)).encode() + GATEWAY.encode())
    assert offset > 0, "row not found in the file"
    page = offset // PAGE
    data[page * PAGE : (page + 1) * PAGE] = random.Random(7).randbytes(PAGE)
    path.write_bytes(bytes(data))
    return page


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_overwritten_pages_are_detected_quarantined_restored_and_salvaged(
    outbox_path: Path,
) -> None:
    _build(outbox_path)
    with Outbox.open(outbox_path, GATEWAY) as box:
        numbering = box.outbox_id()
    _smash_page_holding(outbox_path, 3000)
    damaged = _sha(outbox_path)

    with Outbox.open(outbox_path, GATEWAY) as box:
        report = box.recovery
        assert report is not None and report.problem
        # The damaged file is kept exactly as found, beside the outbox.
        kept = [Path(p) for p in report.quarantined]
        assert kept and all(p.exists() for p in kept) and _sha(kept[0]) == damaged
        assert kept[0].name.startswith("outbox.db.corrupt-")
        assert report.backup is not None and report.backup_last_seq == 2000
        assert report.salvaged_rows > 3500 and report.merged_rows > 1500
        assert report.unreadable_seq_ranges, "the smashed table page must be reported"
        assert report.loss_window_start and report.loss_window_end
        assert "may be lost" in report.summary()

        assert box.check() == []
        stored = {r.id: r for r in box.list(limit=10_000)}
        lost = [n for n in range(4000) if punch_id(GATEWAY, punch(n)) not in stored]
        assert 0 < len(lost) < 100  # one page worth of rows, all after the backup
        assert all(n >= 2000 for n in lost)
        ranges = report.unreadable_seq_ranges
        assert all(any(a <= n + 1 <= b for a, b in ranges) for n in lost)  # seq = n + 1 here
        # Delivery state survives: from the backup and from salvaged rows alike.
        assert stored[punch_id(GATEWAY, punch(0))].delivery == "delivered"
        assert stored[punch_id(GATEWAY, punch(3050))].delivery == "delivered"
        assert box.watermark("lobby-1") == {"next": 2000}  # rewound to the backup's
        stats = box.stats()
        assert stats.recoveries == 1 and stats.pending + stats.delivered == len(stored)
        # Re-reading the terminal from the rewound watermark brings the lost punches back.
        again = box.add_punches(punches(2000, 2000), watermark={"next": 4000})
        assert again.inserted == len(lost)
        assert len(box.list(limit=10_000)) == 4000
        assert min(box.get(i).seq for i in again.ids if i not in stored) > 4000  # type: ignore[union-attr]
        # The backup's numbering goes on (never below what was given out): same outbox id.
        assert box.outbox_id() == numbering


def test_a_wal_cut_short_is_detected_and_the_tail_is_reported_lost(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    backups = path.parent / "backups"
    lines = run_to_end(
        start(
            "insert",
            str(path),
            "--batches",
            "10",
            "--size",
            "100",
            "--backup-dir",
            str(backups),
            "--backup-after",
            "2",
            "--exit-without-close",
        )
    )
    assert len([x for x in lines if x.startswith("committed")]) == 10
    wal = wal_path(path)
    assert wal.exists() and shm_path(path).exists()  # the "crash" left them behind
    cut = wal.stat().st_size * 2 // 5
    with wal.open("r+b") as fh:
        fh.truncate(cut)

    with Outbox.open(path, GATEWAY) as box:
        report = box.recovery
        assert report is not None
        assert "WAL" in report.problem and "cut short" in report.problem
        assert report.tail_lost and report.backup_last_seq == 200
        assert report.loss_window_start and report.loss_window_end
        assert report.seq_after >= report.seq_before + SEQ_GAP_AFTER_LOSS
        kept_wal = [Path(p) for p in report.quarantined if p.endswith("-wal")]
        assert kept_wal and kept_wal[0].stat().st_size == cut
        stored = {r.id for r in box.list(limit=10_000)}
        first = {punch_id(GATEWAY, p) for p in punches(0, 200)}
        assert first <= stored  # from the backup
        assert 200 < len(stored) < 1000  # plus what the surviving WAL frames held
        assert box.check() == []
        # Nothing the backend may have seen is numbered again.
        new = box.add_punches(punches(0, 1000), watermark={"next": 1000})
        assert new.inserted == 1000 - len(stored)
        assert min(box.get(i).seq for i in new.ids if i not in stored) > report.seq_after - 1  # type: ignore[union-attr]


def test_recovery_can_be_refused_and_then_nothing_is_touched(outbox_path: Path) -> None:
    _build(outbox_path)
    _smash_page_holding(outbox_path, 3000)
    before = _sha(outbox_path)
    with pytest.raises(CorruptOutboxError, match="To recover") as info:
        Outbox.open(outbox_path, GATEWAY, recover=False)
    assert str(outbox_path) in str(info.value)
    assert _sha(outbox_path) == before
    assert not list(outbox_path.parent.glob("*.corrupt-*"))


@pytest.mark.parametrize("damage", ["page", "header"])
def test_without_a_backup_the_readable_rows_are_salvaged_into_a_new_outbox(
    outbox_path: Path, damage: str
) -> None:
    _build(outbox_path, backup=False)
    if damage == "page":
        _smash_page_holding(outbox_path, 1000)
    else:
        with outbox_path.open("r+b") as fh:
            fh.write(b"this is not a database any more" * 4)
    with Outbox.open(outbox_path, GATEWAY) as box:
        report = box.recovery
        assert report is not None and report.backup is None
        assert box.check() == []
        assert box.watermark("lobby-1") is None  # terminals are read again from the start
        count = len(box.list(limit=10_000))
        if damage == "page":
            assert 3900 < count < 4000 and report.unreadable_seq_ranges
        else:
            assert count == 0 and report.salvaged_rows == 0 and report.notes
        assert report.seq_after >= SEQ_GAP_AFTER_LOSS or damage == "page"


def test_damage_found_while_another_process_has_it_open_is_reported_not_repaired(
    outbox_path: Path,
) -> None:
    _build(outbox_path)
    with Outbox.open(outbox_path, GATEWAY) as daemon:
        _smash_page_holding(outbox_path, 3000)
        with pytest.raises(CorruptOutboxError, match="open in another process"):
            Outbox.open(outbox_path, GATEWAY)
        assert not list(outbox_path.parent.glob("*.corrupt-*"))
        assert daemon.check(full=False)  # and the running one sees it too
