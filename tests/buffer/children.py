"""Starting and reading ``tests.buffer.writer`` child processes, with bounded waits."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from buffer.identity import punch_id
from tests.buffer.factory import punches

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "gw-test"


def start(*args: str) -> subprocess.Popen[str]:
    """A writer child with stdout piped (line-buffered text)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.buffer.writer", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def read_line(proc: subprocess.Popen[str], timeout: float) -> str | None:
    """The child's next stdout line, or None at EOF; fails the test after ``timeout``."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise AssertionError(f"child said nothing for {timeout}s")
    finally:
        selector.close()
    line = proc.stdout.readline()
    return line.rstrip("\n") if line else None


def run_to_end(proc: subprocess.Popen[str], timeout: float = 60.0) -> list[str]:
    """All stdout lines of a child that must exit 0 within ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"child still running after {timeout}s") from None
    assert proc.returncode == 0, f"child failed ({proc.returncode}): {err[-2000:]}"
    return out.splitlines()


def committed_ids(lines: list[str], device: str = "lobby-1") -> set[str]:
    """Ids of every punch the child reported as committed ("committed <start> <count>")."""
    ids: set[str] = set()
    for line in lines:
        if line.startswith("committed "):
            _, first, count = line.split()
            ids.update(punch_id(GATEWAY, p) for p in punches(int(first), int(count), device=device))
    return ids


def deadline(seconds: float) -> float:
    """A monotonic deadline ``seconds`` from now."""
    return time.monotonic() + seconds


def fork_inserter(path: Path, start: int, size: int, seed: int) -> tuple[int, TextIO]:
    """Fork this (already imported) interpreter into a writer of random batches, forever.

    Much cheaper than a fresh interpreter per crash run. The child reports each commit on the
    returned pipe and never returns into pytest: it ends by ``os._exit`` or by the caller's
    SIGKILL. The caller must hold no open outbox while forking.
    """
    from tests.buffer.writer import insert_batches

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_fd)
            out = os.fdopen(write_fd, "w", buffering=1)

            def say(line: str) -> None:
                out.write(line + "\n")
                out.flush()

            insert_batches(path, start, 100_000, size, seed, say)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, os.fdopen(read_fd, "r")


def read_pipe_line(pipe: TextIO, timeout: float) -> str | None:
    """Next line from a child's pipe, None at EOF; fails the test after ``timeout``."""
    selector = selectors.DefaultSelector()
    selector.register(pipe, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise AssertionError(f"child said nothing for {timeout}s")
    finally:
        selector.close()
    line = pipe.readline()
    return line.rstrip("\n") if line else None
