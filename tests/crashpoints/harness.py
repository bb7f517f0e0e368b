"""The parent's side: run a child operation, SIGKILL it at step k, or let it finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.crashpoints.steps import ENV

ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 200  # bound on the steps walked through for one operation


def run_cut(operation: str, *args: str, at: int, timeout: float = 30.0) -> str | None:
    """Run ``operation`` and SIGKILL it before step ``at``; None when it finished first.

    Returns the PAUSED line (what step it was stopped at) when it was killed.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{ENV: str(at)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crashpoints.child", operation, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # Log lines go to stdout too; the child ends itself after 60 s if never killed.
        line = proc.stdout.readline()
        while line and not line.startswith(("PAUSED", "DONE")):
            line = proc.stdout.readline()
        if line.startswith("PAUSED"):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=timeout)
            return line.strip()
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0 and line.startswith("DONE"), f"child failed: {err[-3000:]}"
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
