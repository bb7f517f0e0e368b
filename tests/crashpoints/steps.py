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
import sqlite3
import traceback
from collections.abc import Callable
from typing import Any

_PAUSE_LIMIT_S = 60.0  # a child nobody kills ends itself
TICK_OPS = 100  # SQLite VM instructions per tick


def arm(
    wanted: int, say: Callable[[str], None], hold: int, tick: int = 0
) -> Callable[[], tuple[int, int]]:
    """Count the steps and SQL ticks from now on; stop before step ``wanted`` (0: never) or at
    SQL tick ``tick`` (0: never). Returns the counters (steps, ticks).

    A tick is ``TICK_OPS`` SQLite virtual-machine instructions on any connection opened from
    now on: a point inside a statement or a transaction, where a file step never lands.
    Stopped, it says ``PAUSED <n> <call> <args>`` and waits (bounded) on the fd ``hold``.
    """
    count = [0]
    ticks = [0]

    def stop(text: str) -> None:
        say(f"PAUSED {text}")
        select.select([hold], [], [], _PAUSE_LIMIT_S)
        os._exit(3)

    def wrap(owner: Any, attr: str) -> None:
        real = getattr(owner, attr)

        def step(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] == wanted:
                stop(f"{count[0]} {attr} {' '.join(str(a) for a in args)}")
            return real(*args, **kwargs)

        setattr(owner, attr, step)

    for attr in ("replace", "rename", "unlink", "remove", "link", "fsync", "truncate"):
        wrap(os, attr)
    for attr in ("copyfile", "rmtree"):
        wrap(shutil, attr)

    def progress() -> int:
        ticks[0] += 1
        if ticks[0] == tick:
            stop(f"tick {tick} (inside SQL)")
        return 0

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_progress_handler(progress, TICK_OPS)
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    return lambda: (count[0], ticks[0])


def fork_cut(
    operation: Callable[[], object], at: int = 0, tick: int = 0, timeout: float = 30.0
) -> str:
    """Run ``operation`` in a forked child, SIGKILLed before its step ``at`` or at ``tick``.

    Returns the PAUSED line when it was killed there, ``DONE <steps> <ticks>`` when it
    finished first. The caller must hold no open outbox while forking.
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
                counted = arm(at, say, hold_read, tick)
                operation()
                say("DONE {} {}".format(*counted()))
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
    else:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, line
    return line
