"""Write failures of a dying SD card: the message says what is wrong and what to do."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from urllib.request import pathname2url

import pytest

from buffer import Outbox
from buffer.database import translate
from buffer.lockfile import lock_error
from config.errors import DiskFullError, OutboxError
from tests.buffer.factory import punches

GATEWAY = "gw-test"
_SQLITE_IOERR_WRITE = 778  # what SQLite reports for EIO, and for EROFS after a kernel remount


def test_a_write_refused_by_a_read_only_file_names_the_read_only_cause(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        kept = box.add_punches(punches(0, 5), watermark={"next": 5}).ids
        writable = box._conn
        assert writable is not None
        # Fault injection: SQLite opened the file read-only (as it does on a read-only mount).
        box._conn = sqlite3.connect(
            f"file:{pathname2url(str(path))}?mode=ro", uri=True, isolation_level=None
        )
        try:
            with pytest.raises(OutboxError) as info:
                box.add_punches(punches(5, 5), watermark={"next": 10})
        finally:
            box._conn.close()
            box._conn = writable
        message = str(info.value)
        assert "read-only" in message and "dmesg" in message, message
        assert {r.id for r in box.list()} == set(kept)
        assert box.watermark("lobby-1") == {"next": 5}


def test_an_io_error_says_the_card_may_be_failing_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"")
    error = sqlite3.OperationalError("disk I/O error")
    # EIO cannot be produced without a failing device: the error SQLite raises for it.
    error.sqlite_errorcode = _SQLITE_IOERR_WRITE
    translated = translate(error, path, "storing punches")
    assert not isinstance(translated, DiskFullError)
    message = str(translated)
    assert str(path) in message and "disk I/O error" in message
    assert "dmesg" in message and "SD card" in message and "backup" in message


def test_a_lock_refused_by_a_read_only_filesystem_says_the_card_may_be_failing(
    tmp_path: Path,
) -> None:
    # EROFS cannot be produced without mounting: the error the kernel gives after a remount.
    refused = OSError(errno.EROFS, os.strerror(errno.EROFS))
    message = lock_error(tmp_path / "outbox.db.lock", refused, "the outbox lock")
    assert "read-only" in message.lower() and "dmesg" in message and "SD card" in message
    assert "owner" not in message  # not the advice for a wrong user
