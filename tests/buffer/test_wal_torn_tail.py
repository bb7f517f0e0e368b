"""A power cut tears the unsynced tail of the WAL: not damage, no recovery.

The kernel writes dirty pages back in any order, so a power cut before a commit's fsync
returned can leave an early frame of the WAL's tail half written (its header with the current
salt, part of its page old) while later frames, commit frames included, are whole. Delivery
marks are committed without an fsync (``buffer.delivery.bookkeeping_transaction``), so several
such commits can follow a torn frame. Only a frame an fsync had made durable is damage when
it fails its checksum: recovery (restore, salvage, watermarks rewound, seq jump) is for those.
Crash images are copies of a real outbox's files taken while its writer still had them open.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from buffer import Outbox
from buffer.database import shm_path, wal_path
from buffer.integrity import wal_cut_short
from buffer.walframes import wal_damaged, wal_tail_unsynced
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches

WAL_HEADER, FRAME_HEADER = 32, 24
BATCH = 100


def crash_image(box: Outbox, dest: Path) -> Path:
    """The database file and WAL as a power cut finds them (no checkpoint, no close)."""
    dest.mkdir(parents=True)
    image = dest / box.path.name
    shutil.copyfile(box.path, image)
    shutil.copyfile(wal_path(box.path), wal_path(image))
    return image


def insert(box: Outbox, batches: int, start: int = 0) -> int:
    """``batches`` synced commits of ``BATCH`` punches each; returns the next punch index."""
    for n in range(start, start + batches * BATCH, BATCH):
        box.add_punches(punches(n, BATCH), watermark={"next": n + BATCH})
    return start + batches * BATCH


def mark(box: Outbox, first: int, count: int) -> None:
    """``count`` unsynced bookkeeping commits: sent mark raised, one row marked delivered."""
    for seq in range(first, first + count):
        box.mark_sent_ahead(seq, 0)
        box.mark_delivered_seqs([seq])


def transactions(wal: Path) -> list[list[int]]:
    """The committed transactions of a WAL, each as its frame indices (commit frame last)."""
    data = wal.read_bytes() if wal.exists() else b""
    if len(data) < WAL_HEADER:
        return []
    page = struct.unpack(">I", data[8:12])[0]
    done: list[list[int]] = []
    current: list[int] = []
    for i in range((len(data) - WAL_HEADER) // (FRAME_HEADER + page)):
        current.append(i)
        if struct.unpack(">I", data[WAL_HEADER + i * (FRAME_HEADER + page) + 4 :][:4])[0]:
            done.append(current)
            current = []
    return done


def tear(wal: Path, index: int) -> None:
    """Frame ``index`` half written: header and first half new, second half still old bytes
    (here those of frame 0, as a reused WAL holds an older frame at every place)."""
    data = bytearray(wal.read_bytes())
    page = struct.unpack(">I", data[8:12])[0]
    at = WAL_HEADER + index * (FRAME_HEADER + page) + FRAME_HEADER
    old = WAL_HEADER + FRAME_HEADER
    half = page // 2
    torn = bytes(b ^ 0xA5 for b in data[old + half : old + page])  # never equal to the new
    data[at + half : at + page] = torn
    wal.write_bytes(bytes(data))


def cut_after(wal: Path, index: int) -> None:
    """The WAL ends after frame ``index``: the frames after it never reached the disk."""
    data = wal.read_bytes()
    page = struct.unpack(">I", data[8:12])[0]
    wal.write_bytes(data[: WAL_HEADER + (index + 1) * (FRAME_HEADER + page)])


def rows(image: Path) -> tuple[int, int]:
    """(rows, delivered rows) after opening the image; asserts no recovery ran."""
    with Outbox.open(image, GATEWAY, disk_reserve_bytes=0) as box:
        assert box.recovery is None, f"a needless recovery: {box.recovery.problem}"
        stats = box.stats()
        return len(box.list(limit=100_000)), stats.delivered


def recovered(image: Path) -> str:
    """The problem the recovery at open names; asserts one ran."""
    with Outbox.open(image, GATEWAY, disk_reserve_bytes=0) as box:
        assert box.recovery is not None, "committed transactions were dropped silently"
        return box.recovery.problem


def test_a_last_commit_torn_before_its_fsync_returned_is_not_taken_for_damage(
    outbox_path: Path, tmp_path: Path
) -> None:
    """Its commit frame reached the disk before an earlier frame of it: never acknowledged."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        insert(box, 10)
        image = crash_image(box, tmp_path / "cut")
    last = transactions(wal_path(image))[-1]
    assert len(last) > 1
    tear(wal_path(image), last[0])
    assert rows(image) == (900, 0)  # SQLite drops the torn transaction, as it should


def test_unsynced_delivery_marks_after_a_torn_frame_are_not_taken_for_damage(
    outbox_path: Path, tmp_path: Path
) -> None:
    """Three mark commits never fsynced: the first torn, the next ones whole."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        insert(box, 5)
        inserts = len(transactions(wal_path(box.path)))
        mark(box, 1, 3)
        image = crash_image(box, tmp_path / "cut")
    marks = transactions(wal_path(image))[inserts:]
    assert len(marks) == 6
    tear(wal_path(image), marks[0][0])
    assert rows(image) == (500, 0)  # the marks are lost: those rows are sent again


def test_a_torn_mark_later_made_durable_by_a_synced_commit_is_damage(
    outbox_path: Path, tmp_path: Path
) -> None:
    """The next punch's fsync returned (a mark was written after it): the mark was on disk."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        insert(box, 5)
        inserts = len(transactions(wal_path(box.path)))
        mark(box, 1, 2)
        insert(box, 1, start=500)
        mark(box, 3, 1)
        image = crash_image(box, tmp_path / "cut")
    tear(wal_path(image), transactions(wal_path(image))[inserts][0])
    assert "WAL" in recovered(image)


def test_a_torn_punch_commit_followed_by_marks_is_damage(outbox_path: Path, tmp_path: Path) -> None:
    """A mark was written after the punches' commit, so that commit's fsync had returned."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        insert(box, 5)
        mark(box, 1, 2)
        image = crash_image(box, tmp_path / "cut")
    commits = transactions(wal_path(image))
    last_insert = commits[-5]
    assert len(last_insert) > 1
    tear(wal_path(image), last_insert[0])
    assert "damaged" in recovered(image)


def test_every_torn_frame_is_damage_exactly_up_to_the_last_commit_proven_synced(
    outbox_path: Path, tmp_path: Path
) -> None:
    """Five punch commits, then three pairs of marks: a frame torn anywhere up to the fifth
    punch commit is damage (a mark was written after it), anywhere after it is not."""
    Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0).close()  # the schema checkpointed
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        before = len(transactions(wal_path(box.path)))
        insert(box, 5)
        synced_end = transactions(wal_path(box.path))[-1][-1]
        mark(box, 1, 3)
        image = crash_image(box, tmp_path / "cut")
    assert len(transactions(wal_path(image))) == before + 5 + 6
    last = transactions(wal_path(image))[-1][-1]
    verdicts = {}
    for index in range(last + 1):
        copy = tmp_path / f"frame-{index}" / image.name
        copy.parent.mkdir()
        shutil.copyfile(image, copy)
        shutil.copyfile(wal_path(image), wal_path(copy))
        tear(wal_path(copy), index)
        verdicts[index] = wal_damaged(copy) is not None
    assert verdicts == {index: index <= synced_end for index in range(last + 1)}


def test_unsynced_marks_missing_from_the_wal_but_counted_in_its_index_are_not_a_cut(
    outbox_path: Path, tmp_path: Path
) -> None:
    """The kernel wrote the WAL index (a mapped file, never fsynced) back after the marks
    went in, but not the WAL's unsynced tail: the WAL ends at the last synced commit."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        insert(box, 5)
        synced_end = transactions(wal_path(box.path))[-1][-1]
        mark(box, 1, 3)
        image = crash_image(box, tmp_path / "cut")
        shutil.copyfile(shm_path(box.path), shm_path(image))
    cut_after(wal_path(image), synced_end)
    assert rows(image) == (500, 0)


def test_synced_punch_commits_missing_from_the_wal_are_still_a_cut(
    outbox_path: Path, tmp_path: Path
) -> None:
    """Their fsync had returned before the index counted them: the WAL lost durable commits."""
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        insert(box, 3)
        kept_end = transactions(wal_path(box.path))[-1][-1]
        insert(box, 2, start=300)
        mark(box, 1, 3)
        image = crash_image(box, tmp_path / "cut")
        shutil.copyfile(shm_path(box.path), shm_path(image))
    cut_after(wal_path(image), kept_end)
    index = shm_path(image).read_bytes()
    with Outbox.open(image, GATEWAY, disk_reserve_bytes=0) as box:
        report = box.recovery
        assert report is not None and "cut short" in report.problem
        kept = [Path(p) for p in report.quarantined if p.endswith("-shm")]
        assert kept and kept[0].read_bytes() == index, "the diagnosis rebuilt the WAL index"


def test_a_wal_cut_anywhere_is_a_cut_exactly_while_it_lost_a_synced_commit(
    outbox_path: Path, tmp_path: Path
) -> None:
    """Five punch commits, then three pairs of marks, the index counting all of them: a WAL
    ending before the fifth punch commit lost a synced commit, one ending after it did not."""
    Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0).close()  # the schema checkpointed
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        insert(box, 5)
        synced_end = transactions(wal_path(box.path))[-1][-1]
        mark(box, 1, 3)
        image = crash_image(box, tmp_path / "cut")
        index = shm_path(box.path).read_bytes()
    last = transactions(wal_path(image))[-1][-1]
    verdicts = {}
    for end in range(last):
        copy = tmp_path / f"end-{end}" / image.name
        copy.parent.mkdir()
        shutil.copyfile(image, copy)
        shutil.copyfile(wal_path(image), wal_path(copy))
        shm_path(copy).write_bytes(index)
        cut_after(wal_path(copy), end)
        assert wal_cut_short(copy) is not None
        verdicts[end] = not wal_tail_unsynced(copy)
        assert shm_path(copy).read_bytes() == index
    assert verdicts == {end: end < synced_end for end in range(last)}
