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

SERVICE_GROUP = "punchgate"


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
