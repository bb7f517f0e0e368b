"""Stopping a child process at its k-th file-system step, where the parent SIGKILLs it.

A step is one call that changes what is on disk or makes it durable (rename, unlink, link,
fsync, a file copy). Counting them lets a test cut a multi-step operation at every boundary
in turn: the one thing that cannot run here is the power failing, so the child stops there
and the parent kills it (SIGKILL: no clean-up code runs, as at a power cut).
"""

from __future__ import annotations

import os
import select
import shutil
import sys
from collections.abc import Callable
from typing import Any

ENV = "PUNCHGATE_CRASH_AT"  # the step number to stop before (1-based); unset: never stop
_PAUSE_LIMIT_S = 60.0  # a child nobody kills ends itself


def _pause(step: int, name: str, args: tuple[Any, ...]) -> None:
    sys.stdout.write(f"PAUSED {step} {name} {' '.join(str(a) for a in args)}\n")
    sys.stdout.flush()
    select.select([sys.stdin], [], [], _PAUSE_LIMIT_S)
    os._exit(3)


def arm() -> Callable[[], int]:
    """Count the steps from now on; stop before step ``$PUNCHGATE_CRASH_AT``. Returns a counter."""
    wanted = int(os.environ.get(ENV, "0") or 0)
    count = [0]

    def wrap(owner: Any, attr: str) -> None:
        real = getattr(owner, attr)

        def step(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] == wanted:
                _pause(count[0], attr, args)
            return real(*args, **kwargs)

        setattr(owner, attr, step)

    for attr in ("replace", "rename", "unlink", "remove", "link", "fsync", "truncate"):
        wrap(os, attr)
    for attr in ("copyfile", "rmtree"):
        wrap(shutil, attr)
    return lambda: count[0]
