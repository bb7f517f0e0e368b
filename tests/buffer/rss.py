"""Peak memory of a child process, read from /proc (for the volume tests' bounded-memory checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def reset_peak() -> None:
    """Start the peak RSS (VmHWM) again from the current RSS."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def kib(key: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    raise AssertionError(f"{key} missing from /proc/self/status")


def run_child(code: str, *args: object) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (its own peak RSS); its last line of output, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
