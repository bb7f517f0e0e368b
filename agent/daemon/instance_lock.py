"""One daemon per state directory: an exclusive ``flock`` on ``{state_dir}/daemon.lock``.

Two daemons on one outbox would read every terminal twice and fight over delivery. The kernel
drops the lock when the process dies, even by SIGKILL, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
from pathlib import Path

from config.errors import UsageError

LOCK_FILE = "daemon.lock"


class InstanceLock:
    """Held for the life of ``punchgate run``; holds the pid for the message to a second one."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        """Take the lock or raise ``UsageError`` naming the pid that holds it."""
        refuse_root_in_foreign_dir(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise UsageError(
                f"cannot open the daemon lock {self.path}: {exc.strerror or exc}; run the daemon "
                "as the service user (systemctl start punchgate, or sudo -u punchgate punchgate "
                f"run) and check that {self.path.parent} is a directory that user owns"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"another punchgate daemon (pid {holder}) already uses {self.path.parent}; "
                "stop it first (systemctl stop punchgate) or give this one another state_dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk: the flock is what counts; the pid only names us to a second one
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def refuse_root_in_foreign_dir(state_dir: Path) -> None:
    """Raise ``UsageError`` when root would run in a state dir that belongs to another user.

    Everything root creates there (outbox and its WAL, lock, status, backups) would be owned by
    root, and the service account could not open it: the service fails at its next start.
    """
    if os.geteuid() != 0:
        return
    try:
        owner = Path(state_dir).stat().st_uid
    except FileNotFoundError:
        return
    if owner == 0:
        return
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    raise UsageError(
        f"{state_dir} belongs to user {name}, and this daemon runs as root: the files it would "
        f"create there could not be opened by {name}'s service; start the service "
        f"(systemctl start punchgate) or run it as that user (sudo -u {name} punchgate run)"
    )
