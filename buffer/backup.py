"""Online backups (SQLite backup API), rotation, and verified restore."""

from __future__ import annotations

import errno
import glob
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from buffer import restoring
from buffer.database import fsync_dir, make_state_dir, shm_path, translate, wal_path
from buffer.integrity import sqlite_problems
from buffer.leftovers import cut_short
from buffer.lockfile import OutboxLock, adopt_directory_owner, held_exclusive
from buffer.schema import SCHEMA_VERSION, too_new_message, user_version
from config.errors import OutboxError, SchemaTooNewError, UsageError

log = structlog.get_logger("punchgate.outbox")

_BACKUP_NAME = re.compile(r"^outbox-(\d{8}T\d{6}\d{6}Z)\.db$")
_STAMP = "%Y%m%dT%H%M%S%fZ"

# When the sequence counter of the file being replaced cannot be trusted (the tail may be lost,
# or it is not there to read), the counter jumps by this much so that no number the backend
# may already have seen is reused. It exceeds the rows a gateway writes between two daily
# backups by orders of magnitude. Recovery (``buffer/recovery.py``) applies the same jump.
SEQ_GAP_AFTER_LOSS = 1_000_000


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A verified backup file and what it holds."""

    path: Path
    schema_version: int
    last_seq: int
    rows: int
    gateways: tuple[str, ...] = ()  # the gateway ids its punches carry (none when empty)


def backup_to(src: Path, dest: Path) -> Path:
    """Copy the live outbox ``src`` to ``dest`` consistently, verify it, then rename into place.

    Uses its own read connection, so the writers of the outbox are not blocked (WAL readers
    never block writers) and a partial file never carries the final name.
    """
    _make_directory(dest.parent)
    # A name of its own per process: two backups to one path at once (the daemon's and a
    # technician's, two technicians) each deleted and wrote the other's ".partial" and failed.
    tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    for left in dest.parent.glob(f"{glob.escape(dest.name)}.partial-*"):
        if left == tmp or cut_short(left, left.name.rsplit("-", 1)[1]):
            _remove_quietly(left)  # left by a backup that was killed (SIGKILL, power cut)
    try:
        _copy_db(src, tmp)
        inspect_backup(tmp)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except sqlite3.Error as exc:
        _remove_quietly(tmp)
        raise translate(exc, dest, "backing up the outbox", copy_of=src) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    log.info("outbox_backup", path=str(dest))
    return dest


def backup_rotating(src: Path, directory: Path, keep: int) -> Path:
    """Write ``outbox-<UTC time>.db`` in ``directory`` and delete all but the newest ``keep``."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    # One rotation at a time (the daemon's daily backup and a technician's): two at once each
    # deleted the other's new copy (keep=1 left none) or failed on an old copy already gone.
    # The lock lives beside the outbox: the backup directory may hold only backups.
    with held_exclusive(src.with_name(src.name + ".backup-lock")):
        _remove_cut_copies(directory)
        dest = backup_to(src, directory / f"outbox-{_next_stamp(directory)}.db")
        # Never the file just written, whatever the names say.
        for old in [p for p in list_backups(directory) if p != dest][keep - 1 :]:
            old.unlink()  # only our own dated backups, never the outbox or a quarantined file
            log.info("outbox_backup_rotated", removed=str(old))
    return dest


def _make_directory(directory: Path) -> None:
    """Create the backup directory if needed; an ``OutboxError`` saying what is in the way."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_way = exc.errno in (errno.EEXIST, errno.ENOTDIR)
        what = "is not a directory (a file is in the way)" if in_way else "cannot be created"
        raise OutboxError(
            f"backup directory {directory} {what} ({exc.strerror}): move what is there away, "
            "or set outbox.backup_dir (or give another path) to a directory punchgate may write"
        ) from exc


def _remove_cut_copies(directory: Path) -> None:
    """Remove the copies of dated backups whose process is gone (killed, a power cut).

    ``backup_to`` only cleans up copies for the name it writes, and a dated name is never
    written twice: each daily backup cut short kept a full copy of the outbox, for ever.
    """
    if not directory.is_dir():
        return
    for left in directory.glob("outbox-*.db.partial-*"):
        name, _, pid = left.name.rpartition(".partial-")
        if _BACKUP_NAME.match(name) and cut_short(left, pid):
            _remove_quietly(left)


def _next_stamp(directory: Path) -> str:
    """The UTC time now, or just after the newest backup's name if the clock went back.

    Names give the order (newest first is what recovery restores), so they must grow even
    when the clock is set back (a gateway without RTC, a wrong NTP answer corrected later).
    """
    now = datetime.now(UTC)
    newest = list_backups(directory)[:1]
    if newest:
        last = _stamp_of(newest[0])
        if last is not None and last >= now:
            try:
                now = last + timedelta(microseconds=1)
            except OverflowError:
                pass  # a name at the end of year 9999: rotation still keeps the new file
    return now.strftime(_STAMP)


def _stamp_of(path: Path) -> datetime | None:
    match = _BACKUP_NAME.match(path.name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None  # digits that are no time (month 13): not a name we wrote


def list_backups(directory: Path) -> list[Path]:
    """Backups written by ``backup_rotating``, newest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _stamp_of(p) is not None and p.is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def inspect_backup(path: Path) -> BackupInfo:
    """Verify a backup (``integrity_check``, schema known, tables present) and describe it."""
    if not path.is_file():
        raise OutboxError(f"backup {path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OutboxError(f"backup {path} cannot be opened: {exc}") from exc
    try:
        problems = sqlite_problems(conn, full=True)
        if problems:
            raise OutboxError(f"backup {path} is damaged: {'; '.join(problems[:5])}")
        version = user_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(f"backup {path}: {too_new_message(version)}")
        if version < 1:
            raise OutboxError(f"{path} is not a punchgate outbox (no schema version)")
        last_seq = conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM punches").fetchone()[0]
        gateways = tuple(
            str(r[0]) for r in conn.execute("SELECT DISTINCT gateway_id FROM punches ORDER BY 1")
        )
    except sqlite3.Error as exc:
        raise OutboxError(f"backup {path} is not a readable punchgate outbox: {exc}") from exc
    finally:
        conn.close()
    return BackupInfo(
        path=path,
        schema_version=version,
        last_seq=int(last_seq),
        rows=int(rows),
        gateways=gateways,
    )


def newest_good_backup(directory: Path) -> BackupInfo | None:
    """The newest backup in ``directory`` that passes verification, or None."""
    for candidate in list_backups(directory):
        try:
            return inspect_backup(candidate)
        except OutboxError as exc:
            log.warning("outbox_backup_unusable", path=str(candidate), error=str(exc))
    return None


def aside_name(db_path: Path, label: str) -> Path:
    """A free name ``<db>.<label>-<UTC time>[.n]`` to move the database to."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = db_path.with_name(f"{db_path.name}.{label}-{stamp}")
    n = 1
    while base.exists():
        n += 1
        base = db_path.with_name(f"{db_path.name}.{label}-{stamp}.{n}")
    return base


def move_aside(db_path: Path, label: str, base: Path | None = None) -> list[Path]:
    """Rename the database and its WAL/index to ``base`` (default: ``aside_name``)[-wal|-shm]."""
    if base is None:
        base = aside_name(db_path, label)
    moved = []
    for src, dst in (
        (db_path, base),
        (wal_path(db_path), wal_path(base)),
        (shm_path(db_path), shm_path(base)),
    ):
        if src.exists():
            os.replace(src, dst)
            moved.append(dst)
    fsync_dir(db_path.parent)
    return moved


def _copy_db(src: Path, tmp: Path, seq_at_least: int = 0) -> None:
    """Copy the database ``src`` (with what its WAL holds) to the new file ``tmp``, fsynced.

    The backup API, not a file copy: a file copy leaves behind the commits still in the WAL.
    ``seq_at_least`` raises the copy's sequence counter.
    """
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=10.0)
    try:
        _create_private(tmp)
        target = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            # One step, one read transaction: WAL writers carry on meanwhile, while a
            # stepwise copy restarts on every concurrent write and may never finish.
            source.backup(target)
            # A single self-contained file: no WAL beside the copy.
            target.execute("PRAGMA journal_mode=DELETE")
            if seq_at_least:
                target.execute(
                    "UPDATE counters SET value = max(value, ?) WHERE name = 'seq'",
                    (seq_at_least,),
                )
        finally:
            target.close()
    finally:
        source.close()
    _fsync_file(tmp)


def install_copy(
    src: Path, dest: Path, seq_at_least: int = 0, before: Callable[[], object] = lambda: None
) -> None:
    """Copy ``src`` to ``dest`` via a fsynced temporary file and an atomic rename.

    ``before`` runs once the copy is complete, just before the rename (restore moves the old
    file aside there, so a failed copy leaves the outbox where it was).
    """
    tmp = restoring.copy_path(dest)
    _remove_quietly(tmp)
    try:
        _copy_db(src, tmp, seq_at_least)
        before()
        os.replace(tmp, dest)
    except sqlite3.Error as exc:
        _remove_quietly(tmp)
        raise translate(exc, dest, f"restoring {src}", copy_of=src) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(dest.parent)


def restore_file(src: Path, dest: Path, gateway_id: str | None = None) -> Path:
    """Restore backup ``src`` as the outbox ``dest`` after verifying it.

    Refused while any process has ``dest`` open. An existing ``dest`` (and its WAL, which
    would otherwise be replayed onto the restored file) is moved aside, never deleted.
    The sequence counter never goes back: it continues from the replaced file's counter, or
    jumps by ``SEQ_GAP_AFTER_LOSS`` when that cannot be read (no file, a damaged one), since
    the backend may have seen numbers given out after the backup was taken.
    """
    info = inspect_backup(src)
    foreign = [g for g in info.gateways if g != gateway_id]
    if gateway_id is not None and foreign:
        # Its punches would be sent under this gateway's topic with another gateway's id: the
        # backend refuses them, and they would stay pending here forever.
        raise UsageError(
            f"backup {src} holds punches of gateway {', '.join(foreign)}, not {gateway_id}: "
            "restore a backup of this gateway (its backups are in the backup directory)"
        )
    make_state_dir(dest.parent)
    lock = OutboxLock(dest)
    try:
        lock.try_exclusive("restore the outbox")
        restoring.finish_interrupted(dest)  # an earlier restore cut short: its copy goes in
        given_out = _seq_counter(dest)
        if given_out is None or restoring.recovery_marker(dest).exists():
            # No file, a damaged one, or what an interrupted recovery left (a copy of an
            # older backup: the damaged file it replaces gave out more numbers than it says).
            given_out = max(given_out or 0, info.last_seq) + SEQ_GAP_AFTER_LOSS
        moved: list[Path] = []

        def move_old_aside() -> None:
            # Noted first: a power cut before the copy is renamed in would leave no outbox,
            # and the next start would begin an empty one (numbering from 1 again).
            aside = aside_name(dest, "replaced")
            restoring.write_note(dest, src, aside)
            moved.extend(move_aside(dest, "replaced", aside) if dest.exists() else [])

        install_copy(src, dest, seq_at_least=given_out, before=move_old_aside)
        restoring.clear_note(dest)
    finally:
        lock.close()
    inspect_backup(dest)
    log.warning(
        "outbox_restored",
        source=str(src),
        dest=str(dest),
        last_seq=info.last_seq,
        rows=info.rows,
        moved_aside=[str(p) for p in moved],
    )
    return dest


def _seq_counter(db: Path) -> int | None:
    """The sequence counter of an outbox file (with its WAL), None when it cannot be read.

    The caller holds the exclusive lock. A read-only connection creates an empty WAL and
    index where there were none: those are removed again, the file stays as it was found.
    """
    if not db.is_file():
        return None
    sidecars = [p for p in (wal_path(db), shm_path(db)) if not p.exists()]
    row = None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        pass
    finally:
        for path in sidecars:
            _remove_quietly(path)
    return row[0] if row is not None and type(row[0]) is int else None


def _create_private(path: Path) -> None:
    """Create ``path`` empty for a copy of the outbox: 0640 like the outbox, whatever the umask.

    Under root (a technician's sudo) it belongs to the directory's owner, as the outbox does, so
    a restored outbox opens for the service. Both are best effort on a filesystem without
    owners or modes (a FAT USB stick).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        try:
            os.fchmod(fd, 0o640)
            adopt_directory_owner(fd, path.parent)
        except OSError:
            pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
