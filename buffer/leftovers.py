"""Telling the partial files of a copy cut short (SIGKILL, a power cut) from one still written."""

from __future__ import annotations

import os
import time
from pathlib import Path


def cut_short(partial: Path, pid: str) -> bool:
    """Whether the copy ``partial`` by process ``pid`` was left by a backup that was cut short.

    Its process is gone, or it was written before this boot: after a power cut the pid
    numbers start over, and the dead backup's pid often belongs to a live process again.
    """
    if not pid.isdigit():
        return False  # not a name we wrote: leave it alone
    return not _alive(int(pid)) or before_boot(partial)


def before_boot(path: Path) -> bool:
    """Whether ``path`` was last written before this boot (so no live process is writing it)."""
    try:
        booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return path.stat().st_mtime < booted
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs; True when unsure."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
