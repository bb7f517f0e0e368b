"""A damaged WAL frame, found at open without writing into the file being diagnosed.

SQLite reads a WAL up to its first frame with a wrong checksum and silently drops every commit
after it; the diagnosing connection then checkpointed what it had read into the database file
and deleted the WAL as it closed: punches gone without a word, and the evidence with them.
Real outbox files left by a writer process that exits without closing (a crash).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import struct
from pathlib import Path

from buffer import Outbox
from buffer.database import shm_path, wal_path
from buffer.identity import punch_id
from buffer.recovery import _find_problem
from tests.buffer.children import run_to_end, start
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punch

WAL_HEADER, FRAME_HEADER = 32, 24


def crashed(path: Path, start_at: int = 0, batches: int = 10) -> None:
    """``batches`` commits of 100 punches each, left in the WAL by a process that died."""
    run_to_end(
        start(
            "insert", str(path), "--start", str(start_at), "--batches", str(batches),
            "--size", "100", "--exit-without-close",
        )
    )  # fmt: skip
    assert wal_path(path).exists() and shm_path(path).exists()


def frames(wal: Path) -> tuple[int, int]:
    """(page size, number of whole frames) of a WAL file."""
    data = wal.read_bytes()
    page = struct.unpack(">I", data[8:12])[0]
    return page, (len(data) - WAL_HEADER) // (FRAME_HEADER + page)


def damage_frame(wal: Path, index: int) -> None:
    """Flip bytes in the page data of frame ``index`` (0-based), as bit rot on an SD card."""
    page, _ = frames(wal)
    data = bytearray(wal.read_bytes())
    at = WAL_HEADER + index * (FRAME_HEADER + page) + FRAME_HEADER + 200
    data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    wal.write_bytes(bytes(data))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_wal_frame_followed_by_commits_is_found_and_kept_as_found(
    outbox_path: Path,
) -> None:
    crashed(outbox_path)
    wal = wal_path(outbox_path)
    damage_frame(wal, frames(wal)[1] // 3)
    found = sha(outbox_path), sha(wal)
    with Outbox.open(outbox_path, GATEWAY) as box:
        report = box.recovery
        assert report is not None, "the commits after the damaged frame were dropped silently"
        assert "WAL" in report.problem and "damaged" in report.problem
        assert report.tail_lost  # the terminals are re-read from a rewound watermark
        kept = {Path(p).name.rsplit("-", 1)[-1]: Path(p) for p in report.quarantined}
        db = next(Path(p) for p in report.quarantined if not p.endswith(("-wal", "-shm")))
        assert sha(db) == found[0], "the diagnosis wrote into the damaged database file"
        assert "wal" in kept and sha(kept["wal"]) == found[1], "the damaged WAL was not kept"
        assert box.check() == []


def test_diagnosing_a_damaged_database_writes_nothing_into_it(outbox_path: Path) -> None:
    """Damage in the database file itself, with commits in the WAL: both kept byte for byte."""
    with Outbox.open(outbox_path, GATEWAY) as box:  # 2000 rows in the database file
        for n in range(0, 2000, 500):
            box.add_punches([punch(i) for i in range(n, n + 500)], watermark={"next": n + 500})
    crashed(outbox_path, start_at=2000, batches=3)  # 300 more in the WAL
    data = bytearray(outbox_path.read_bytes())
    offset = data.find(punch_id(GATEWAY, punch(100)).encode() + GATEWAY.encode())
    assert offset > 0
    page = offset // 4096
    data[page * 4096 + 100 : (page + 1) * 4096] = b"\x5a" * (4096 - 100)
    outbox_path.write_bytes(bytes(data))
    found = sha(outbox_path), sha(wal_path(outbox_path))
    with Outbox.open(outbox_path, GATEWAY) as box:
        report = box.recovery
        assert report is not None
        db = next(Path(p) for p in report.quarantined if not p.endswith(("-wal", "-shm")))
        kept_wal = [Path(p) for p in report.quarantined if p.endswith("-wal")]
        assert sha(db) == found[0], "the diagnosis checkpointed the WAL into the damaged file"
        assert kept_wal and sha(kept_wal[0]) == found[1]
        assert report.salvaged_rows >= 2200  # the WAL's rows were salvaged from the copy


def test_a_crash_with_a_sound_wal_opens_without_recovery(outbox_path: Path) -> None:
    crashed(outbox_path)
    with Outbox.open(outbox_path, GATEWAY) as box:
        assert box.recovery is None
        assert len(box.list(limit=2000)) == 1000


def test_a_last_transaction_torn_by_a_power_cut_is_not_taken_for_damage(
    outbox_path: Path,
) -> None:
    """Its frames were never all on the disk (no fsync returned): SQLite rightly drops it."""
    crashed(outbox_path)
    wal = wal_path(outbox_path)
    page, count = frames(wal)
    data = bytearray(wal.read_bytes())
    commits = [
        i
        for i in range(count)
        if struct.unpack(">I", data[WAL_HEADER + i * (FRAME_HEADER + page) + 4 :][:4])[0]
    ]
    first_of_last = commits[-2] + 1  # the frame after the commit before the last one
    at = WAL_HEADER + first_of_last * (FRAME_HEADER + page)
    data[at : at + FRAME_HEADER + page] = bytes(FRAME_HEADER + page)  # a sector never written
    wal.write_bytes(bytes(data))
    with Outbox.open(outbox_path, GATEWAY) as box:
        assert box.recovery is None
        assert len(box.list(limit=2000)) == 900


def test_a_damaged_wal_header_is_found_too(outbox_path: Path) -> None:
    """With its header's checksum wrong SQLite ignores the whole WAL: every commit in it."""
    crashed(outbox_path)
    wal = wal_path(outbox_path)
    data = bytearray(wal.read_bytes())
    data[12] ^= 0x01  # the checkpoint sequence number: covered by the header checksum
    wal.write_bytes(bytes(data))
    with Outbox.open(outbox_path, GATEWAY) as box:
        report = box.recovery
        assert report is not None and "its header" in report.problem


def test_a_file_with_a_hot_rollback_journal_is_still_rolled_back_and_opened(
    tmp_path: Path,
) -> None:
    """The read-only diagnosis cannot roll a hot journal back: a writer does, as before."""
    source = tmp_path / "source.db"
    writer = sqlite3.connect(source, isolation_level=None)
    writer.execute("PRAGMA journal_mode=DELETE")
    writer.execute("CREATE TABLE t(x)")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.execute("PRAGMA cache_size=1")  # spill: the database file changes before commit
    writer.execute("BEGIN")
    writer.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 2000)
    copy = tmp_path / "copy" / "outbox.db"  # a crash image in mid-transaction
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    shutil.copyfile(f"{source}-journal", f"{copy}-journal")
    writer.close()
    assert _find_problem(copy, True, 1.0) is None
    reader = sqlite3.connect(copy)
    try:
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)  # rolled back
    finally:
        reader.close()
