"""The daemon's live status: one JSON file in ``state_dir``, replaced atomically every interval.

``punchgate status`` reads it; a reader can tell a running daemon from a stale file because the
file carries the writer's pid and the time of the last write. A file beats a socket here: it needs
no listener thread, survives a hung daemon (the staleness shows), and is readable by any user the
state directory is readable to.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
STALE_AFTER_INTERVALS = 3  # a status older than this many intervals is stale
STALE_SLACK_S = 5.0  # plus this much, for a loaded machine


def status_path(state_dir: Path) -> Path:
    """Where the live status of the daemon using ``state_dir`` lives."""
    return Path(state_dir) / STATUS_FILE


def utc_now_iso() -> str:
    """Now, as the ISO-8601 UTC text used in status documents."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_status(state_dir: Path, status: dict[str, Any]) -> Path:
    """Write ``status`` to the status file atomically (temp file, fsync-free rename).

    No fsync: the file is rewritten every few seconds and a lost write after a power cut only
    means an older status, which its timestamp reveals.
    """
    path = status_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(status, default=str, ensure_ascii=False, indent=1).encode()
    fd, tmp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temp_files(state_dir: Path) -> list[Path]:
    """Remove the ``.status-*.tmp`` files a crash or power cut left; returns those removed.

    Only the daemon holding the instance lock writes them, so at its start any left is stale.
    """
    removed = []
    for path in Path(state_dir).glob(".status-*.tmp"):
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # not ours to worry about: the next start tries again
    return sorted(removed)


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user (the service account)
    return True


def process_start(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc``); None when it cannot be read.

    With the pid it names one process: a pid the kernel handed to another program after the
    daemon died has another start time. Ticks since boot ignore wall clock jumps.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # Field 22; the command name (field 2, in parentheses) may itself hold spaces or ")".
        return int(text[text.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _same_process(pid: int, started: object) -> bool:
    """False only when ``pid`` is known to belong to another process than the writer."""
    if not isinstance(started, int):
        return True  # written before pid_start existed, or /proc was not readable
    now = process_start(pid)
    return now is None or now == started


def read_status(state_dir: Path, *, now: float | None = None) -> dict[str, Any] | None:
    """The last status written, with ``fresh``, ``pid_alive``, ``running`` and ``age_s`` added.

    ``None`` when there is no status file (other ``OSError``s, such as a permission error, are
    raised: they do not mean the daemon is down). ``running`` means the writer is alive, the
    file is fresh and the daemon did not record a clean stop.
    """
    path = status_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None  # never written, or caught mid-replace on a filesystem without rename
    if not isinstance(data, dict):
        return None
    now = time.time() if now is None else now
    written = data.get("updated_unix")
    interval = float(data.get("interval_s") or 15.0)
    age = now - float(written) if isinstance(written, int | float) else None
    fresh = age is not None and age <= interval * STALE_AFTER_INTERVALS + STALE_SLACK_S
    pid = data.get("pid")
    alive = isinstance(pid, int) and pid_alive(pid) and _same_process(pid, data.get("pid_start"))
    data["age_s"] = None if age is None else round(max(age, 0.0), 1)
    data["fresh"] = fresh
    data["pid_alive"] = alive
    data["running"] = bool(fresh and alive and data.get("state") != "stopped")
    return data
