"""Periodic housekeeping in its own thread: backup, pruning, integrity check, gateway clock check.

Each task is bounded (SQLite does the work in one call) and isolated: a failing task logs what
went wrong and what to do, and the others still run on schedule. The schedule survives restarts
where it matters: a backup is due when the newest backup file is older than the interval, so a
daemon restarted every hour does not write a backup every hour.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from buffer.backup import list_backups
from buffer.integrity import BAD_MARKS
from drivers.timeutil import gateway_clock_problem

log = structlog.get_logger("punchgate.maintenance")

PRUNE_EVERY_S = 3600.0
CHECK_EVERY_S = 86400.0
CLOCK_JUMP_S = 60.0  # wall clock moving this much more or less than the monotonic clock: a jump


class MaintainedOutbox(Protocol):
    """What maintenance needs from the outbox."""

    def backup_rotating(self, directory: Path, keep: int) -> Path: ...

    def prune(self, retention_days: float) -> int: ...

    def check(self, full: bool = True) -> list[str]: ...

    def clear_bad_marks(self) -> int: ...


@dataclass(frozen=True)
class MaintenancePolicy:
    """The schedule, from ``[outbox]`` (replaced on reload)."""

    backup_dir: Path
    backup_keep: int
    backup_interval: float
    retention_days: float
    prune_every: float = PRUNE_EVERY_S
    check_every: float = CHECK_EVERY_S


@dataclass
class MaintenanceReport:
    """Outcome of the last run of each task, for the live status."""

    last_backup: str | None = None
    last_backup_path: str | None = None
    last_prune: str | None = None
    pruned: int = 0
    last_check: str | None = None
    problems: list[str] = field(default_factory=list)
    clock: str = "ok"
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_backup": self.last_backup,
            "last_backup_path": self.last_backup_path,
            "last_prune": self.last_prune,
            "pruned": self.pruned,
            "last_check": self.last_check,
            "problems": list(self.problems),
            "clock": self.clock,
            "errors": dict(self.errors),
        }


def _iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Maintenance:
    """Runs the due tasks every ``tick`` seconds until ``stop()``."""

    def __init__(
        self,
        outbox: MaintainedOutbox,
        policy: MaintenancePolicy,
        *,
        tick: float = 60.0,
        on_error: Callable[[str, str], None] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self.policy = policy
        self._tick = tick
        self._on_error = on_error
        self._wall = wall
        self._monotonic = monotonic
        self.report = MaintenanceReport()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_prune: float | None = None
        self._last_check: float | None = None
        self._clock_ref: tuple[float, float] | None = None
        self._deadline = monotonic() + tick + 3600.0

    def start(self) -> Maintenance:
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def healthy(self, now: float | None = None) -> bool:
        """The thread runs and is not stuck in a task past a generous bound."""
        now = self._monotonic() if now is None else now
        return self._thread is not None and self._thread.is_alive() and now <= self._deadline

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.report.as_dict()

    def _run(self) -> None:
        while not self._stop.is_set():
            # A backup or integrity check of a large outbox may take minutes on an SD card.
            self._deadline = self._monotonic() + 3600.0
            self.run_due()
            self._deadline = self._monotonic() + self._tick + 3600.0
            self._stop.wait(self._tick)

    def run_due(self) -> None:
        """Run every task that is due now; each one's failure is logged and isolated."""
        now = self._monotonic()
        self._task("clock", self._check_clock)
        if self._backup_due():
            self._task("backup", self._backup)
        if self._last_prune is None or now - self._last_prune >= self.policy.prune_every:
            self._last_prune = now
            self._task("prune", self._prune)
        if self._last_check is None or now - self._last_check >= self.policy.check_every:
            self._last_check = now
            self._task("check", self._check)

    def _task(self, name: str, func: Callable[[], None]) -> None:
        if self._stop.is_set():
            return  # shutting down: the outbox is about to close
        try:
            func()
        except Exception as exc:  # noqa: BLE001 - one task failing must not stop the others
            message = str(exc) or type(exc).__name__
            with self._lock:
                previous, self.report.errors[name] = self.report.errors.get(name), message
            if message == previous:
                return  # failing at every tick for days: said when it starts, not every minute
            log.error(
                "maintenance_failed",
                task=name,
                error=message,
                action="punches are still stored and delivered; fix what the error names, the "
                "task is retried at its next turn (punchgate doctor checks the outbox)",
            )
            if self._on_error is not None:
                self._on_error(f"maintenance {name}", message)
        else:
            with self._lock:
                previous = self.report.errors.pop(name, None)
            if previous is not None:
                log.info("maintenance_recovered", task=name, was=previous)

    def _backup_due(self) -> bool:
        try:
            backups = list_backups(self.policy.backup_dir)
            if not backups:
                return True
            age = self._wall() - backups[0].stat().st_mtime
        except OSError:
            return True  # the backup task then fails with its own message, and alone
        # A backup from the future was written before the clock was set back: its age says
        # nothing, and waiting for the clock to catch up would mean no backup for that long.
        return age >= self.policy.backup_interval or age < -CLOCK_JUMP_S

    def _backup(self) -> None:
        path = self._outbox.backup_rotating(self.policy.backup_dir, self.policy.backup_keep)
        log.info("outbox_backup_written", path=str(path))
        with self._lock:
            self.report.last_backup = _iso()
            self.report.last_backup_path = str(path)

    def _prune(self) -> None:
        count = self._outbox.prune(self.policy.retention_days)
        with self._lock:
            self.report.last_prune = _iso()
            self.report.pruned += count

    def _check(self) -> None:
        problems = self._outbox.check(full=True)
        if problems and all(p.startswith(BAD_MARKS) for p in problems):
            # Only wrong wall_ok marks: clearing them loses nothing (the drain then checks those
            # rows itself), while leaving them would send wrong local times until someone
            # runs the repair by hand. A wrong mark is a writer bug: say so, loudly.
            cleared = self._outbox.clear_bad_marks()
            log.error(
                "outbox_wall_marks_repaired",
                cleared=cleared,
                problems=problems,
                action="report this as a bug with the seqs above; their time_utc was right, "
                "their local time may have been sent wrong before the repair",
            )
            problems = self._outbox.check(full=True)
        if problems:
            log.error(
                "outbox_integrity_problems",
                problems=problems[:20],
                action="stop the service, run 'punchgate outbox check' and restore a backup",
            )
        with self._lock:
            self.report.last_check = _iso()
            self.report.problems = problems[:50]

    def _check_clock(self) -> None:
        wall, mono = self._wall(), self._monotonic()
        state = "ok"
        problem = gateway_clock_problem(datetime.fromtimestamp(wall, UTC))
        if problem is not None:
            state = "unset"
        elif self._clock_ref is not None:
            jump = (wall - self._clock_ref[0]) - (mono - self._clock_ref[1])
            if abs(jump) >= CLOCK_JUMP_S:
                log.warning(
                    "gateway_clock_jumped",
                    jump_s=round(jump, 1),
                    action="check NTP (timedatectl); punch times come from the terminals",
                )
        self._clock_ref = (wall, mono)
        with self._lock:
            previous, self.report.clock = self.report.clock, state
        if state != previous:
            if state == "unset":
                log.error(
                    "gateway_clock_unset",
                    action="the gateway clock is before 2024: enable NTP (timedatectl)",
                )
                if self._on_error is not None:
                    # Also in `punchgate status`: every terminal then shows a drift of decades,
                    # and setting their clocks is refused until the gateway's is set.
                    self._on_error("gateway clock", problem or "")
            else:
                log.info("gateway_clock_ok")
