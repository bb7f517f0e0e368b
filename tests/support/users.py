"""Playing a user without access to a directory, for "run as the wrong user" tests."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from contextlib import contextmanager

NOBODY = 65534
# Acting as nobody, this process cannot read the interpreter's own files (they are under
# root's home here): load the codec the config loader needs while we still can.
codecs.lookup("utf-8-sig")


@contextmanager
def other_user() -> Iterator[None]:
    """Inside, this process acts as nobody when it is root; otherwise the caller's chmod 000
    on the directory already shuts it out."""
    if os.geteuid() != 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)
