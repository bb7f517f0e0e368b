"""An advisory lock beside the outbox: shared while open, exclusive to replace the file.

Every process with the outbox open (the daemon, a CLI command) holds it shared. Restore and
corruption recovery move the database file, which is only safe when nobody else has it open,
so they need it exclusive and refuse with a clear message otherwise.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config.errors import OutboxError, UsageError


def adopt_directory_owner(fd: int, directory: Path) -> None:
    """Give a file root just created to the owner of its directory (the service user).

    A technician running the CLI with sudo must not leave root-owned outbox files behind that
    the ``punchgate`` service can then no longer open.
    """
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if st.st_uid != 0:
        os.fchown(fd, st.st_uid, st.st_gid)


def open_lock_file(path: Path) -> int:
    """Open a lock file, creating it if missing: never through a symbolic link.

    Root (a technician's sudo) may open it in a directory the service account owns. Whatever
    that account placed at the path must not make root open, or hand over, another file: a
    link to /etc/shadow would otherwise be given to the service account by
    ``adopt_directory_owner``. Only a file this call created is adopted. ``OSError`` with
    ``ELOOP`` means the path is a symbolic link.
    """
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(3):  # created, or opened as it is; a file removed in between: again
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                return os.open(path, flags)
            except FileNotFoundError:
                continue
        try:
            adopt_directory_owner(fd, path.parent)
        except BaseException:
            os.close(fd)
            raise
        return fd
    return os.open(path, flags)


def lock_error(path: Path, exc: OSError, what: str = "the lock") -> str:
    """Why a lock file could not be opened, and what to do."""
    if exc.errno == errno.ELOOP:
        return (
            f"{path}: the lock file is a symbolic link, which punchgate never creates: remove it "
            "and find out who made it (the state directory belongs to the service alone)"
        )
    if exc.errno == errno.EROFS:
        return (
            f"{path}: cannot open {what}: the filesystem is read-only. After I/O errors the "
            "kernel remounts the SD card read-only (see dmesg): the card may be failing. Copy "
            "the newest backup off it and replace the card, then restore that backup"
        )
    return (
        f"{path}: cannot open {what}: {exc.strerror}; check the state directory (its owner, "
        "free space, nothing else at that path) or run as the service user"
    )


class OutboxLock:
    """``flock`` on ``<outbox>.lock``; released on ``close`` or process exit (even SIGKILL)."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def shared(self) -> OutboxLock:
        """Take the lock shared, waiting for a restore/recovery in progress to finish."""
        self._take(fcntl.LOCK_SH)
        return self

    def first_or_shared(self) -> bool:
        """Exclusive if nobody else has the outbox open (True), else wait for shared (False)."""
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._take(fcntl.LOCK_SH)
            return False
        return True

    def try_exclusive(self, action: str) -> None:
        """Upgrade to exclusive or raise ``OutboxError`` saying who must stop first."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutboxError(
                f"cannot {action}: {self.path.with_suffix('')} is open in another process "
                "(the punchgate service?). Stop it first (systemctl stop punchgate), then retry."
            ) from None

    def downgrade(self) -> None:
        """Back to shared after an exclusive operation."""
        self._take(fcntl.LOCK_SH)

    def close(self) -> None:
        """Release the lock; idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = open_lock_file(self.path)
            except PermissionError as exc:  # run as a user who may not write the state dir
                raise UsageError(
                    f"{self.path}: cannot open the outbox lock: permission denied; run as the "
                    "service user (sudo -u punchgate ...) or as root"
                ) from exc
            except OSError as exc:
                raise OutboxError(lock_error(self.path, exc, "the outbox lock")) from exc
        return self._fd

    def _take(self, mode: int) -> None:
        fcntl.flock(self._open(), mode)


@contextmanager
def held_exclusive(path: Path) -> Iterator[None]:
    """``flock`` ``path`` exclusively inside, waiting for another process that holds it."""
    try:
        # Adopted by the directory's owner when created: the daemon must open it after a root
        # CLI run.
        fd = open_lock_file(path)
    except OSError as exc:
        raise OutboxError(lock_error(path, exc)) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
