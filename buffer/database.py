"""Opening SQLite the durable way, write transactions, and SQLite errors turned into ours."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from buffer.lockfile import adopt_directory_owner
from config.errors import CorruptOutboxError, DiskFullError, OutboxError

# sqlite3 primary result codes (the low byte of an extended code).
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_NOTADB = 26

_CACHE_KIB = 8 * 1024  # page cache per connection; see connect()
# Bytes the WAL file keeps when it starts over after a checkpoint. Normally it stays near the
# auto-checkpoint size (1000 pages, 4 MiB); a long reader (an export, an integrity check)
# during heavy writing lets it grow, and without a limit the file kept that size on disk.
WAL_SIZE_LIMIT = 16 * 1024 * 1024


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL`` and the busy timeout set.

    ``isolation_level=None`` turns off the driver's implicit transactions: every write goes
    through :func:`write_transaction` (``BEGIN IMMEDIATE``), every read is a single statement
    that ends its own read transaction, so no lock is held between calls.
    """
    if not path.exists():
        # Create it ourselves so a root CLI run hands it to the service user; SQLite then gives
        # the -wal and -shm files the database file's owner.
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            pass
        except OSError as exc:
            raise OutboxError(f"{path}: cannot create the outbox: {exc.strerror}") from exc
        else:
            try:
                adopt_directory_owner(fd, path.parent)
            finally:
                os.close(fd)
    try:
        conn = sqlite3.connect(
            str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise translate(exc, path, "open") from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(
                f"{path}: SQLite refused WAL mode (got {mode!r}); put the outbox on a local "
                "filesystem (not NFS/SMB) that supports shared memory"
            )
        # FULL: in WAL mode the WAL is fsynced at every commit, so a commit that acknowledged a
        # punch survives a power cut. NORMAL would only fsync at checkpoints and could lose the
        # last transactions - exactly the punches a technician just watched go in.
        conn.execute("PRAGMA synchronous=FULL")
        # 8 MiB: inserts touch the right edges of the table and of indexes keyed by time-ordered
        # ids and seqs, and delivery reads forward, so a larger cache only grows the daemon's
        # memory (32 MiB filled up during a 100k-row drain: 90 MB RSS instead of ~62 MB).
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, path, "open") from exc
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection, path: Path, what: str) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; roll back and raise an ``OutboxError`` on failure.

    IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so a second
    writer (the CLI while the daemon runs) waits instead of failing half-way with
    SQLITE_BUSY when it upgrades a read transaction.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise translate(exc, path, what) from exc
    try:
        yield
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after SQLITE_FULL); nothing committed
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, path, what) from exc
        if isinstance(exc, OverflowError):  # sqlite3 binds integers of 64 bits at most
            raise OutboxError(
                f"{path}: {what}: a value does not fit SQLite's 64-bit integers ({exc}); "
                "nothing of this write was stored"
            ) from exc
        raise


@contextmanager
def read_transaction(conn: sqlite3.Connection, path: Path, what: str) -> Iterator[None]:
    """``BEGIN`` ... ``COMMIT``: several reads that see one snapshot (WAL: writers go on)."""
    try:
        conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise translate(exc, path, what) from exc


def translate(
    exc: sqlite3.Error, path: Path, what: str, copy_of: Path | None = None
) -> OutboxError:
    """Turn a sqlite3 error into the outbox error a person can act on.

    ``copy_of``: when ``path`` is being written as a copy of that file (a backup, a restore),
    whose size tells a full disk from another I/O error (the failed copy is already empty).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    full = primary == _SQLITE_IOERR and disk_looks_full(path, copy_of)
    if primary == _SQLITE_FULL or full:
        return DiskFullError(
            f"{what} failed: the disk holding {path} is full ({exc}). Nothing committed was "
            f"lost; free space on {path.parent} (free now: {free_bytes(path.parent) / 2**20:,.1f}"
            " MiB) "
            "and the outbox continues where it stopped."
        )
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return CorruptOutboxError(
            f"{what} failed: {path} is corrupt ({exc}). Restart punchgate: opening the outbox "
            "moves the file aside, restores the newest good backup and salvages readable rows."
        )
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return OutboxError(
            f"{what} failed: {path} stayed locked by another process longer than the busy "
            f"timeout ({exc}); retry, and check no stuck punchgate process holds it"
        )
    if primary in (_SQLITE_READONLY, _SQLITE_CANTOPEN):
        return OutboxError(
            f"{what} failed: cannot write {path} ({exc}); check that the directory exists, "
            f"the punchgate user owns it and its filesystem is not read-only. {_FAILING_CARD}"
        )
    if primary == _SQLITE_IOERR:
        return OutboxError(f"{what} failed on {path}: {exc}. {_FAILING_CARD}")
    return OutboxError(f"{what} failed on {path}: {exc}")


# What to do when the storage itself refuses: the field's SD cards fail this way.
_FAILING_CARD = (
    "After I/O errors the kernel remounts the SD card read-only (see dmesg): the card may be "
    "failing. Copy the newest backup off it, run punchgate outbox check, and replace the card "
    "if the errors go on (then restore that backup)."
)


def free_bytes(directory: Path) -> int:
    """Bytes available to this (unprivileged) process on the filesystem of ``directory``."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return -1


def file_size(path: Path) -> int:
    """Size of a file, 0 when absent."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def disk_looks_full(path: Path, copy_of: Path | None = None) -> bool:
    """Whether an I/O error on ``path`` is most likely "no space": disk or file-size limit.

    A write that hits ENOSPC mid-page is reported by SQLite as SQLITE_FULL, but one refused
    outright (ENOSPC, or EFBIG from ``ulimit -f`` / systemd ``LimitFSIZE``) surfaces as a
    generic SQLITE_IOERR, so look at the filesystem and the process limit.
    """
    if 0 <= free_bytes(path.parent) < 1024 * 1024:
        return True
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return False
    biggest = max(file_size(path), file_size(wal_path(path)))
    if copy_of is not None:  # a copy needs the size of its source, WAL included
        biggest = max(biggest, file_size(copy_of) + file_size(wal_path(copy_of)))
    return biggest + 65536 >= limit


Identity = tuple[tuple[int, int] | None, ...]


def file_identity(path: Path) -> Identity:
    """(device, inode) of the database at ``path`` and of its WAL and index (None: absent)."""
    found: list[tuple[int, int] | None] = []
    for file in (path, wal_path(path), shm_path(path)):
        try:
            st = os.stat(file)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_dev, st.st_ino))
    return tuple(found)


def require_same_file(path: Path, opened: Identity) -> None:
    """Raise ``OutboxError`` unless ``path`` and its WAL and index are the files opened.

    A connection keeps writing to a database file deleted or renamed under it (a technician
    "cleaning up" the state directory): every commit succeeds, the terminal's log is cleared,
    and the punches vanish with the unlinked file at the next start. A deleted WAL takes the
    commits not yet checkpointed with it at a power cut; a deleted index lets the next
    process build a second one, and two writers with two indexes corrupt the database.
    """
    now = file_identity(path)
    if opened[0] is None or now[0] != opened[0]:
        raise OutboxError(
            f"{path} was deleted or replaced while punchgate had it open (was the state "
            "directory cleaned up?): punches are no longer stored, so terminals keep "
            "theirs, and those already stored are still delivered. Restart punchgate "
            "(systemctl restart punchgate): it opens the outbox at that path again and "
            "re-reads the terminals."
        )
    sidecars = (wal_path(path), shm_path(path))
    for file, before, after in zip(sidecars, opened[1:], now[1:], strict=True):
        if before is not None and after != before:  # absent at open: created later by SQLite
            raise OutboxError(
                f"{file} was deleted or replaced while punchgate had the outbox open (it is part "
                f"of {path}, not a log): punches are no longer stored, so terminals keep theirs, "
                "and those already stored are still delivered. Restart punchgate (systemctl "
                f"restart punchgate): its clean stop writes everything into {path}."
            )


def wal_path(path: Path) -> Path:
    """The WAL file SQLite keeps next to ``path``."""
    return path.with_name(path.name + "-wal")


def shm_path(path: Path) -> Path:
    """The shared-memory index SQLite keeps next to ``path``."""
    return path.with_name(path.name + "-shm")


def make_state_dir(directory: Path) -> None:
    """Create the outbox's directory if needed; an ``OutboxError`` when a file is in the way.

    ``PermissionError`` passes through: the CLI turns it into "run as the service user".
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise OutboxError(
            f"{directory} is not a directory ({exc.strerror}: a file is in the way, left by a "
            f"clean-up?): move that file away, then start again (the directory is created), "
            "or set agent.state_dir to a directory"
        ) from exc


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
