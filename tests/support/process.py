"""A command-line process interrupted the way a technician does it: Ctrl-C after its banner."""

from __future__ import annotations

import signal
import subprocess


def ctrl_c_after_banner(argv: list[str], timeout: float = 20.0) -> tuple[int, str, str, str]:
    """Run ``argv``; send SIGINT as soon as its first stdout line is out.

    Returns (exit code, that first line, the rest of stdout, stderr). The process is killed
    if it has not ended within ``timeout`` seconds.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    return proc.returncode, banner, out, err
