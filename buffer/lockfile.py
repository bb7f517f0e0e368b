"""An advisory lock beside the outbox: shared while open, exclusive to replace the file.

Every process with the outbox open (the daemon, a CLI command) holds it shared. Restore and
corruption recovery move the database file, which is only safe when nobody else has it open,
so they need it exclusive and refuse with a clear message otherwise.
"""

from __future__ import annotations

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
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except PermissionError as exc:  # run as a user who may not write the state dir
                raise UsageError(
                    f"{self.path}: cannot open the outbox lock: permission denied; run as the "
                    "service user (sudo -u punchgate ...) or as root"
                ) from exc
            except OSError as exc:
                raise OutboxError(
                    f"{self.path}: cannot open the outbox lock: {exc.strerror}; check the "
                    "state directory (its owner, free space, nothing else at that path)"
                ) from exc
            adopt_directory_owner(self._fd, self.path.parent)
        return self._fd

    def _take(self, mode: int) -> None:
        fcntl.flock(self._open(), mode)


@contextmanager
def held_exclusive(path: Path) -> Iterator[None]:
    """``flock`` ``path`` exclusively inside, waiting for another process that holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OutboxError(
            f"{path}: cannot open the lock: {exc.strerror}; check that directory (its owner, "
            "free space) or run as the service user"
        ) from exc
    try:
        adopt_directory_owner(fd, path.parent)  # the daemon must open it after a root CLI run
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
