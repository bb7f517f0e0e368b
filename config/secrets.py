"""Who else can read a secret file: one rule for the loader's warning and the doctor's check.

The documented install (docs/operations.md, scripts/install.sh) is owner root, group punchgate,
mode 0640: the service reads it through its group. So group read is fine when the group is
the service's (``punchgate``) or this process's own; anything for other users, group write, or
group read for another group exposes the secret.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import structlog

from config.errors import ConfigError

SERVICE_GROUP = "punchgate"
MAX_SECRET_BYTES = 64 * 1024  # a password is short; more is a wrong path (/dev/zero, a log)

log = structlog.get_logger("config")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def exposure(st: os.stat_result) -> str | None:
    """Why a file with this stat is readable or writable beyond the service; None if it is not."""
    mode = st.st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return f"readable or writable by every user (mode {oct(mode & 0o777)})"
    if mode & stat.S_IWGRP:
        return f"writable by group {_group_name(st.st_gid)} (mode {oct(mode & 0o777)})"
    group = _group_name(st.st_gid)
    if mode & stat.S_IRGRP and group != SERVICE_GROUP and st.st_gid != os.getegid():
        return f"readable by group {group} (mode {oct(mode & 0o777)})"
    return None


def private_step(path: os.PathLike[str] | str) -> str:
    """The command that makes ``path`` readable by the service only."""
    return f"chown root:{SERVICE_GROUP} {path} && chmod 640 {path}"


def read_bounded(path: Path, limit: int) -> bytes:
    """The file's bytes, at most one past ``limit`` (/dev/zero, a database named by mistake)."""
    st = path.stat()
    if stat.S_ISREG(st.st_mode) and st.st_size <= limit:
        return path.read_bytes()
    with path.open("rb") as stream:
        return stream.read(limit + 1)


def read_secret_file(path: Path, where: str) -> str:
    """The secret in ``path`` (UTF-8, stripped), never echoed; a warning if others can read it.

    ``where`` names the setting in messages (``"--password-file"``); ``ConfigError`` if the
    file cannot be read, is not UTF-8 or is empty (an empty password is refused forever).
    """
    try:
        st = path.stat()
        raw = read_bounded(path, MAX_SECRET_BYTES)
    except OSError as exc:
        msg = f"{where}: cannot read {path}: {exc.strerror}"
        if isinstance(exc, PermissionError):
            msg += f"; the service reads it through its group: {private_step(path)}"
        elif isinstance(exc, IsADirectoryError):
            msg += "; name the file that holds the password, not its directory"
        else:
            msg += "; check the path, or create the file with the password in it"
        raise ConfigError(msg, [msg]) from exc
    if len(raw) > MAX_SECRET_BYTES:
        msg = (
            f"{where}: {path} holds more than {MAX_SECRET_BYTES // 1024} KiB, not a password; "
            "check that it names the file with the broker password in it"
        )
        raise ConfigError(msg, [msg])
    try:
        text = raw.decode("utf-8-sig").strip()  # Notepad writes a BOM
    except UnicodeDecodeError:
        # Never echo the bytes: they are the secret.
        msg = f"{where}: {path} is not UTF-8 text; save the password as UTF-8"
        raise ConfigError(msg, [msg]) from None
    if not text:
        msg = f"{where}: {path} is empty; write the broker password into it"
        raise ConfigError(msg, [msg])
    exposed = exposure(st)
    if exposed:
        log.warning(
            "secret file is readable by other users",
            path=str(path),
            why=exposed,
            action=private_step(path),
        )
    return text
