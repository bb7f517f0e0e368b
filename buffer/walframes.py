"""Reading a WAL's frames ourselves: a damaged frame SQLite would silently stop at.

SQLite reads a WAL up to its first frame whose checksum is wrong and treats the rest as never
written: every commit after a damaged frame (bit rot on an SD card, a bad sector) is dropped
without an error, and the next checkpoint makes the loss permanent. Each frame carries the
running checksum up to itself, so every frame can be checked on its own, and a sound commit
after a damaged frame proves that committed transactions would be lost.
"""

from __future__ import annotations

import struct
from pathlib import Path

from buffer.database import wal_path

_MAGIC_LE, _MAGIC_BE = 0x377F0682, 0x377F0683
_HEADER = 32
_FRAME_HEADER = 24


def _checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes), continued from (s0, s1)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for first, second in zip(words[0::2], words[1::2], strict=True):
        s0 = (s0 + first + s1) & 0xFFFFFFFF
        s1 = (s1 + second + s0) & 0xFFFFFFFF
    return s0, s1


def wal_damaged(db_path: Path) -> str | None:
    """Why the WAL of ``db_path`` holds commits SQLite would silently drop, if it does.

    Only frames of the WAL's current generation (its salt) count: the frames after them are
    left over from before a reset, or were never written (a power cut during the last
    transaction, which no fsync had acknowledged: SQLite rightly drops it).
    """
    wal = wal_path(db_path)
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
        first_bad: int | None = None if _checksum(header[:24], big, 0, 0) == (c1, c2) else -1
        seed = (c1, c2)
        lost = 0
        index = 0
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
            if not sound and first_bad is None:
                first_bad = index
            elif sound and commit_size and first_bad is not None:
                lost += 1
            index += 1
    if first_bad is None or not lost:
        return None
    where = "its header" if first_bad < 0 else f"frame {first_bad + 1} of {index}"
    return (
        f"the WAL {wal} is damaged ({where} fails its checksum): SQLite would silently drop "
        f"the {lost} committed transaction(s) after it"
    )
