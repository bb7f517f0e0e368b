"""Doctor checks on the outbox: integrity, free disk, and how long punches have been waiting.

The doctor opens the outbox with ``recover=False``: it diagnoses and never repairs (repair moves
files and must be a decision, made by restarting the service or by ``outbox restore``).
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from agent.doctor.result import CheckResult, Job, fail, ok, skip, warn
from buffer.integrity import BAD_MARKS
from buffer.outbox import Outbox
from buffer.records import StoredPunch
from config import Settings
from config.errors import CorruptOutboxError, OutboxError, SchemaTooNewError, UsageError

FAMILY = "outbox"
PENDING_WARN_S = 15 * 60.0  # delivery normally takes seconds; this much backlog needs a look
PENDING_FAIL_S = 24 * 3600.0  # a day of punches not reaching HR is a fault to fix today
DISK_WARN_FACTOR = 2.0  # warn while free disk is within twice the reserve
# Opening runs quick_check and the integrity check reads every page and audits every marked
# row: work in proportion to the file (1 GB, a month's outage of 4,000,000 punches, took
# 16.5 s on a fast disk), so the job gets time per byte on top of the network step's timeout.
# This pace is a slow SD card's; a lock is bounded apart by the busy timeout.
SCAN_BYTES_PER_S = 4 * 2**20


def outbox_jobs(settings: Settings, timeout: float) -> list[Job]:
    """One job: the checks share an open outbox."""
    path = settings.agent.outbox_path
    return [
        Job(
            FAMILY,
            str(path),
            "outbox",
            timeout + _scan_seconds(path),
            lambda: check_outbox(settings, timeout),
            next_step_on_timeout=(
                "the outbox stayed locked or the disk is very slow: check 'punchgate status' "
                "and the disk (dmesg, iostat)"
            ),
        )
    ]


def _scan_seconds(path: Path) -> float:
    """Time to read the outbox and its WAL at ``SCAN_BYTES_PER_S`` (0 when there is none)."""
    size = 0
    for part in (path, path.with_name(path.name + "-wal")):
        with suppress(OSError):
            size += part.stat().st_size
    return size / SCAN_BYTES_PER_S


def check_outbox(settings: Settings, timeout: float) -> list[CheckResult]:
    """Integrity, free disk and pending age of the configured outbox."""
    path = settings.agent.outbox_path
    where = str(path)
    names = ("integrity", "free disk", "pending punches")
    try:
        return _check_outbox(settings, timeout)
    except PermissionError as exc:
        detail = f"cannot open {exc.filename or path}: permission denied"
    except UsageError as exc:  # the outbox's own refusal of a user without access to its lock
        detail = str(exc)
    return [
        fail(
            FAMILY,
            where,
            "open",
            detail,
            "run the doctor as root or as the service user: sudo /opt/punchgate/bin/punchgate "
            "doctor",
        ),
        *(skip(FAMILY, where, n, "not run: cannot open the outbox") for n in names),
    ]


def _check_outbox(settings: Settings, timeout: float) -> list[CheckResult]:
    path = settings.agent.outbox_path
    where = str(path)
    names = ("integrity", "free disk", "pending punches")
    if not path.exists():
        return [
            warn(
                FAMILY,
                where,
                "outbox file",
                f"no outbox at {path} yet",
                "it is created when the service first starts: sudo systemctl start punchgate",
            ),
            *(skip(FAMILY, where, n, "not run: no outbox file") for n in names),
        ]
    if path.is_dir():  # SQLite says only "unable to open database file", read as a bad disk
        return [
            fail(
                FAMILY,
                where,
                "open",
                f"{path} is a directory, not the outbox file",
                f"look inside, then move it aside (mv {path} {path}.moved); the service "
                "creates a new outbox at its next start",
            ),
            *(skip(FAMILY, where, n, "not run: cannot open the outbox") for n in names),
        ]
    try:
        outbox = Outbox.open(
            path,
            settings.agent.gateway_id,
            disk_reserve_bytes=int(settings.outbox.disk_reserve_mb * 2**20),
            busy_timeout=max(1.0, timeout / 2),
            backup_dir=settings.outbox.backup_dir,
            recover=False,
        )
    except CorruptOutboxError as exc:
        return [
            fail(FAMILY, where, "integrity", str(exc).split(". To recover")[0], _RESTORE),
            *(skip(FAMILY, where, n, "not run: the outbox is damaged") for n in names[1:]),
        ]
    except SchemaTooNewError as exc:
        return [
            fail(FAMILY, where, "schema", str(exc), "install the newer punchgate that wrote it"),
            *(skip(FAMILY, where, n, "not run: schema too new") for n in names),
        ]
    except OutboxError as exc:
        return [
            fail(
                FAMILY,
                where,
                "open",
                str(exc),
                "run as the service user (sudo -u punchgate punchgate doctor) and check the "
                "owner of the state directory",
            ),
            *(skip(FAMILY, where, n, "not run: cannot open the outbox") for n in names),
        ]
    try:
        return [_integrity(outbox), *_stats(outbox)]
    finally:
        outbox.close()


_RESTORE = (
    "stop the service, then start it again (opening repairs from the newest backup and salvages "
    "readable rows), or restore by hand: punchgate outbox restore <backup>"
)

_CLEAR_MARKS = (
    "clear the wrong marks (nothing else changes): punchgate outbox check --clear-bad-marks; "
    "the service also clears them at its daily check"
)


def _integrity(outbox: Outbox) -> CheckResult:
    where = str(outbox.path)
    try:
        problems = outbox.check(full=False)
    except OutboxError as exc:
        return fail(FAMILY, where, "integrity", str(exc), _RESTORE)
    if problems:
        shown = "; ".join(problems[:3]) + (
            f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        )
        if all(p.startswith(BAD_MARKS) for p in problems):  # the file is sound: no restore
            return fail(FAMILY, where, "integrity", shown, _CLEAR_MARKS)
        return fail(FAMILY, where, "integrity", shown, _RESTORE)
    return ok(FAMILY, where, "integrity", "quick_check ok, counters agree with the rows")


def _stats(outbox: Outbox) -> list[CheckResult]:
    where = str(outbox.path)
    stats = outbox.stats()
    free, reserve = stats.free_disk_bytes, stats.disk_reserve_bytes
    disk_detail = f"{_mib(free)} free on {outbox.path.parent}, reserve {_mib(reserve)}"
    if free >= 0 and free < reserve:
        disk = fail(
            FAMILY,
            where,
            "free disk",
            disk_detail + ": below the reserve (punches are still stored, nothing is evicted)",
            f"free space on {outbox.path.parent} now (old logs: journalctl --vacuum-size=100M)",
        )
    elif free >= 0 and free < reserve * DISK_WARN_FACTOR:
        disk = warn(FAMILY, where, "free disk", disk_detail, "free some space soon")
    else:
        disk = ok(FAMILY, where, "free disk", disk_detail)
    return [disk, _pending(where, stats.as_dict(), outbox)]


def _pending(where: str, stats: dict[str, Any], outbox: Outbox) -> CheckResult:
    pending, age = int(stats["pending"]), stats["oldest_pending_age_s"]
    name = "pending punches"
    if not pending or age is None:
        return ok(FAMILY, where, name, f"nothing waiting; {stats['delivered']} delivered so far")
    oldest, last_delivered = stats["oldest_pending_seq"], stats["last_delivered_seq"]
    detail = f"{pending} waiting for delivery, the oldest (seq {oldest}) stored {_age(age)} ago"
    step = (
        "delivery is stuck: see the broker checks, and 'punchgate status' for the daemon's "
        "last delivery error"
    )
    if age >= PENDING_WARN_S and last_delivered and last_delivered > oldest:
        # Later punches went through: the path to the backend works, this punch does not.
        detail += f", while later punches up to seq {last_delivered} were delivered"
        row = _oldest_pending(outbox, pending, oldest)
        if row is not None and row.last_error:
            detail += f"; it failed {row.attempts} time(s), last: {row.last_error[:200]}"
        show = f"punchgate outbox show {row.id}" if row else "punchgate outbox list --pending"
        step = (
            "later punches were delivered, so the connection works and this punch is refused "
            f"on its way: read its last error ({show}) and give its id and that error to the "
            "HR system's team, or report it"
        )
    if age >= PENDING_FAIL_S:
        return fail(FAMILY, where, name, detail, step)
    if age >= PENDING_WARN_S:
        return warn(FAMILY, where, name, detail, step)
    return ok(FAMILY, where, name, detail)


def _oldest_pending(outbox: Outbox, pending: int, seq: int) -> StoredPunch | None:
    if pending > _FEW:
        return None  # a large backlog is not one bad punch; do not read it all
    rows = outbox.list(pending_only=True, limit=_FEW)
    return rows[0] if rows and rows[0].seq == seq else None


_FEW = 100  # pending rows read to find the oldest one's error


def _mib(count: int) -> str:
    return "unknown" if count < 0 else f"{count / 2**20:,.0f} MiB"


def _age(seconds: float) -> str:
    """``3725`` -> ``"1h2m"``: the two largest units are enough to act on."""
    rest = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2]) or "0s"
