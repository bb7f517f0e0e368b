"""Stopping a forked child at its k-th file-system step, where the parent SIGKILLs it.

A step is one call that changes what is on disk or makes it durable (rename, unlink, link,
fsync, a file copy). Counting them lets a test cut a multi-step operation at every boundary
in turn: the one thing that cannot run here is the power failing, so the child stops there
and the parent kills it (SIGKILL: no clean-up code runs, as at a power cut).
"""

from __future__ import annotations

import os
import select
import shutil
import traceback
from collections.abc import Callable
from typing import Any

_PAUSE_LIMIT_S = 60.0  # a child nobody kills ends itself


def arm(wanted: int, say: Callable[[str], None], hold: int) -> Callable[[], int]:
    """Count the steps from now on; stop before step ``wanted`` (0: never). Returns a counter.

    Stopped, it says ``PAUSED <n> <call> <args>`` and waits (bounded) on the fd ``hold``.
    """
    count = [0]

    def wrap(owner: Any, attr: str) -> None:
        real = getattr(owner, attr)

        def step(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] == wanted:
                say(f"PAUSED {count[0]} {attr} {' '.join(str(a) for a in args)}")
                select.select([hold], [], [], _PAUSE_LIMIT_S)
                os._exit(3)
            return real(*args, **kwargs)

        setattr(owner, attr, step)

    for attr in ("replace", "rename", "unlink", "remove", "link", "fsync", "truncate"):
        wrap(os, attr)
    for attr in ("copyfile", "rmtree"):
        wrap(shutil, attr)
    return lambda: count[0]


def fork_cut(operation: Callable[[], object], at: int, timeout: float = 30.0) -> str | None:
    """Run ``operation`` in a forked child, SIGKILLed before its step ``at``.

    Returns the PAUSED line when it was killed there, None when it finished first. The caller
    must hold no open outbox while forking.
    """
    read_fd, write_fd = os.pipe()
    hold_read, hold_write = os.pipe()  # never written: the paused child waits on it
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_fd)
            out = os.fdopen(write_fd, "w", buffering=1)

            def say(line: str) -> None:
                out.write(line.replace("\n", " ") + "\n")
                out.flush()

            try:
                counted = arm(at, say, hold_read)
                operation()
                say(f"DONE {counted()}")
                code = 0
            except BaseException:
                say("FAILED " + traceback.format_exc())
        finally:
            os._exit(code)
    os.close(write_fd)
    os.close(hold_read)
    try:
        with os.fdopen(read_fd, "r") as pipe:
            ready, _, _ = select.select([pipe], [], [], timeout)
            assert ready, f"the child said nothing for {timeout}s"
            line = pipe.readline().strip()
        if line.startswith("PAUSED"):
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(hold_write)
    assert line.startswith(("PAUSED", "DONE")), f"the child failed: {line[-3000:]}"
    if line.startswith("PAUSED"):
        assert os.WIFSIGNALED(status), line
        return line
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, line
    return None
