"""Reading a WAL's frames ourselves: a damaged frame SQLite would silently stop at.

SQLite reads a WAL up to its first frame whose checksum is wrong and treats the rest as never
written: every commit after a damaged frame (bit rot on an SD card, a bad sector) is dropped
without an error, and the next checkpoint makes the loss permanent. Each frame carries the
running checksum up to itself, so every frame can be checked on its own.

A bad frame is damage only where an fsync had made it durable. Before a commit's fsync
returns, the kernel writes the WAL's dirty pages back in any order: a power cut then leaves
an early frame half written while later frames of the same and of later unsynced commits are
whole. That is the ordinary end of a WAL after a power cut, and SQLite rightly drops it.
The same holds for frames the WAL index counts that are missing from the WAL. Where the two
cannot be told apart, no recovery is started for a tail that was never provably durable.
"""

from __future__ import annotations

import sqlite3
import struct
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import structlog

from buffer.database import shm_path, wal_path

log = structlog.get_logger("punchgate.outbox")

_MAGIC_LE, _MAGIC_BE = 0x377F0682, 0x377F0683
_HEADER = 32
_FRAME_HEADER = 24
# The tables written by commits WITHOUT an fsync (``buffer.delivery.bookkeeping_transaction``:
# the sent and delivered marks). A commit writing any page of another table or index synced.
_UNSYNCED_TABLES = ("counters", "delivered")
_SYNCED_PAGES = (
    "SELECT s.pageno FROM dbstat AS s JOIN sqlite_master AS m ON m.name = s.name"
    " WHERE m.tbl_name NOT IN (?, ?)"
)


# The WAL index (-shm): 32 KiB blocks of page numbers, one per frame, in native byte order;
# the first block starts with the 136-byte index header and so holds fewer.
_SHM_BLOCK, _SHM_HEADER = 32768, 136
_PGNOS_FIRST, _PGNOS = 4062, 4096


@dataclass(frozen=True)
class _Frame:
    page_no: int
    commit: bool  # the last frame of a transaction
    sound: bool


def _checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes), continued from (s0, s1)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for first, second in zip(words[0::2], words[1::2], strict=True):
        s0 = (s0 + first + s1) & 0xFFFFFFFF
        s1 = (s1 + second + s0) & 0xFFFFFFFF
    return s0, s1


def _read_frames(wal: Path) -> tuple[bool, list[_Frame]] | None:
    """(header sound, the frames of the WAL's current generation), or None: nothing to read."""
    try:
        fh = wal.open("rb")
    except OSError:
        return None
    with fh:
        header = fh.read(_HEADER)
        if len(header) < _HEADER:
            return None
        magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", header)
        if magic not in (_MAGIC_LE, _MAGIC_BE) or page_size < 512 or page_size & (page_size - 1):
            return None  # not a WAL SQLite would read either: nothing of it is used
        big = magic == _MAGIC_BE
        seed = (c1, c2)
        frames: list[_Frame] = []
        while True:
            frame = fh.read(_FRAME_HEADER + page_size)
            if len(frame) < _FRAME_HEADER + page_size:
                break
            page_no, commit_size, s1, s2, f1, f2 = struct.unpack(">6I", frame[:_FRAME_HEADER])
            if (s1, s2) != (salt1, salt2):
                break  # the end of this generation
            body = frame[:8] + frame[_FRAME_HEADER:]
            sound = page_no != 0 and _checksum(body, big, *seed) == (f1, f2)
            seed = (f1, f2)
            frames.append(_Frame(page_no, commit_size != 0, sound))
    return _checksum(header[:24], big, 0, 0) == (c1, c2), frames


def _synced_pages(db_path: Path) -> frozenset[int] | None:
    """Pages of the tables only fsynced commits write, as SQLite reads the file now (up to
    the first bad frame); None when SQLite cannot tell (then no commit is proven durable)."""
    # readonly_shm: the first connection would rebuild the -shm index, the evidence
    # wal_cut_short reads (at this open, and at the next if this one is cut short); SQLite
    # then reads the WAL into private memory instead. It needs an -shm file to be there.
    shm = "&readonly_shm=1" if shm_path(db_path).exists() else ""
    uri = f"file:{urllib.parse.quote(str(db_path))}?mode=ro{shm}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        return frozenset(p for (p,) in conn.execute(_SYNCED_PAGES, _UNSYNCED_TABLES))
    except sqlite3.Error as exc:
        # No dbstat in this SQLite build, or a database it cannot read (quick_check, next,
        # says so). Erring towards no recovery: see ``wal_damaged``.
        log.warning("wal_frames_unclassified", outbox=str(db_path), error=str(exc))
        return None
    finally:
        conn.close()


def _durable_end(db_path: Path, frames: list[_Frame], first_bad: int) -> int | None:
    """The index of the last commit frame after ``first_bad`` an fsync provably made durable.

    A commit returns only after its fsync (``synchronous=FULL``), and the next transaction's
    frames are written only after it returned: a synced commit with any frame after it was
    on the disk, with every frame before it. (A checkpoint syncs the WAL too, but leaves no
    trace in it. SQLite pads no commit with copies of its last frame: the unix VFS declares
    powersafe overwrite.) Transactions end at sound commit frames only: a bad frame's header
    may be half old. A synced commit whose own commit frame is bad joins the next one, which
    then proves it (the first bad frame is at or before that commit frame).
    """
    commits: list[tuple[int, set[int]]] = []
    pages: set[int] = set()
    for index, frame in enumerate(frames):
        if not frame.sound:
            continue
        pages.add(frame.page_no)
        if frame.commit:
            if first_bad < index < len(frames) - 1:
                commits.append((index, pages))
            pages = set()
    if not commits:
        return None
    synced = _synced_pages(db_path)
    if synced is None:
        return None
    return next((index for index, pages in reversed(commits) if pages & synced), None)


def wal_damaged(db_path: Path) -> str | None:
    """Why the WAL of ``db_path`` holds durable commits SQLite would silently drop, if it does.

    Only frames of the WAL's current generation (its salt) count: the frames after them are
    left over from before a reset, or were never written. A bad header counts when a sound
    commit follows it (SQLite syncs the header before it writes the generation's first
    frame: a power cut never tears it under frames). A bad frame counts only when a later
    commit proves it durable: a commit that wrote a page of a table only fsynced commits
    write (punches, watermarks, ...), followed by any frame of a later transaction.

    The tail after the last such commit was never provably on the disk: a power cut tears it
    (its frames reach the disk in any order), so a bad frame there is not reported, although
    bit rot there looks the same: no recovery is started for a tail never provably durable.
    Such tails: the last punch commit before a crash (nothing after it shows that its fsync
    returned) and delivery marks, committed without an fsync (``buffer.delivery``), whose loss
    only means those punches are sent again. Without SQLite's dbstat table (a build option)
    nothing is proven durable and only a bad header is reported.
    """
    wal = wal_path(db_path)
    read = _read_frames(wal)
    if read is None:
        return None
    header_sound, frames = read
    first_bad = next((i for i, f in enumerate(frames) if not f.sound), None)
    if not header_sound:
        first_bad = -1
    if first_bad is None:
        return None
    if first_bad < 0:  # synced before any frame was written: every commit after it is lost
        durable = max((i for i, f in enumerate(frames) if f.commit and f.sound), default=None)
    else:
        durable = _durable_end(db_path, frames, first_bad)
    where = "its header" if first_bad < 0 else f"frame {first_bad + 1} of {len(frames)}"
    if durable is None:
        log.info("wal_tail_torn", wal=str(wal), bad=where)  # dropped by SQLite, as it should
        return None
    lost = sum(f.commit and f.sound for f in frames[first_bad + 1 : durable + 1])
    return (
        f"the WAL {wal} is damaged ({where} fails its checksum): SQLite would silently drop "
        f"at least {lost} committed transaction(s) after it"
    )


def _indexed_pages(shm: bytes, first: int, last: int) -> set[int] | None:
    """The page numbers the WAL index records for frames ``first``..``last`` (1-based)."""
    pages = set()
    for frame in range(first, last + 1):
        if frame <= _PGNOS_FIRST:
            at = _SHM_HEADER + 4 * (frame - 1)
        else:
            block, slot = divmod(frame - _PGNOS_FIRST - 1, _PGNOS)
            at = (block + 1) * _SHM_BLOCK + 4 * slot
        if at + 4 > len(shm):
            return None
        pages.add(struct.unpack_from("=I", shm, at)[0])
    return pages


def wal_tail_unsynced(db_path: Path) -> bool:
    """Whether the frames the WAL index counts but the WAL lacks were never provably synced.

    The index (``-shm``) is a mapped file the kernel writes back whenever it likes: after a
    power cut it can count commits of delivery marks (never fsynced, see ``wal_damaged``)
    that never reached the WAL. That is an ordinary power cut, not a WAL cut short. The
    missing frames (and the uncommitted frames before them) count as synced when one of them
    wrote a page of a table only fsynced commits write: that commit returned, after its fsync,
    before the index counted it. ``buffer.integrity.wal_cut_short`` judges the same index;
    this is read before any connection rebuilds it. Without SQLite's dbstat table nothing is
    proven synced: no recovery for a tail never provably durable.
    """
    try:
        shm = shm_path(db_path).read_bytes()
    except OSError:
        return False
    read = _read_frames(wal_path(db_path))
    if len(shm) < _SHM_HEADER or shm[:48] != shm[48:96] or read is None:
        return False
    is_init, max_frame = shm[12], struct.unpack_from("=I", shm, 16)[0]  # see wal_cut_short
    with wal_path(db_path).open("rb") as fh:
        wal_header = fh.read(_HEADER)
    if not is_init or shm[32:40] != wal_header[16:24]:
        return False  # not an index of this WAL: wal_cut_short judges it
    _header_sound, frames = read
    if len(frames) >= max_frame:
        return False
    missing = _indexed_pages(shm, len(frames) + 1, max_frame)
    if missing is None:
        return False
    last_commit = max((i for i, f in enumerate(frames) if f.commit and f.sound), default=-1)
    missing |= {f.page_no for f in frames[last_commit + 1 :] if f.sound}
    synced = _synced_pages(db_path)
    if synced is not None and missing & synced:
        return False
    log.info("wal_tail_unsynced", wal=str(wal_path(db_path)), frames=len(frames), index=max_frame)
    return True
