"""Online backups (SQLite backup API), rotation, and verified restore."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from buffer.database import fsync_dir, shm_path, translate, wal_path
from buffer.integrity import sqlite_problems
from buffer.lockfile import OutboxLock
from buffer.schema import SCHEMA_VERSION, too_new_message, user_version
from config.errors import OutboxError, SchemaTooNewError

log = structlog.get_logger("punchgate.outbox")

_BACKUP_NAME = re.compile(r"^outbox-(\d{8}T\d{6}\d{6}Z)\.db$")


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A verified backup file and what it holds."""

    path: Path
    schema_version: int
    last_seq: int
    rows: int


def backup_to(src: Path, dest: Path) -> Path:
    """Copy the live outbox ``src`` to ``dest`` consistently, verify it, then rename into place.

    Uses its own read connection, so the writers of the outbox are not blocked (WAL readers
    never block writers) and a partial file never carries the final name.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    _remove_quietly(tmp)
    try:
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=10.0)
        try:
            target = sqlite3.connect(str(tmp))
            try:
                # One step, one read transaction: WAL writers carry on meanwhile, while a
                # stepwise copy restarts on every concurrent write and may never finish.
                source.backup(target)
                # A single self-contained file: no WAL beside the backup.
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        finally:
            source.close()
        _fsync_file(tmp)
        inspect_backup(tmp)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except sqlite3.Error as exc:
        _remove_quietly(tmp)
        raise translate(exc, dest, "backing up the outbox") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    log.info("outbox_backup", path=str(dest))
    return dest


def backup_rotating(src: Path, directory: Path, keep: int) -> Path:
    """Write ``outbox-<UTC time>.db`` in ``directory`` and delete all but the newest ``keep``."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = backup_to(src, directory / f"outbox-{stamp}.db")
    for old in list_backups(directory)[keep:]:
        old.unlink()  # only our own dated backups, never the outbox or a quarantined file
        log.info("outbox_backup_rotated", removed=str(old))
    return dest


def list_backups(directory: Path) -> list[Path]:
    """Backups written by ``backup_rotating``, newest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _BACKUP_NAME.match(p.name) and p.is_file()]
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
    except sqlite3.Error as exc:
        raise OutboxError(f"backup {path} is not a readable punchgate outbox: {exc}") from exc
    finally:
        conn.close()
    return BackupInfo(path=path, schema_version=version, last_seq=int(last_seq), rows=int(rows))


def newest_good_backup(directory: Path) -> BackupInfo | None:
    """The newest backup in ``directory`` that passes verification, or None."""
    for candidate in list_backups(directory):
        try:
            return inspect_backup(candidate)
        except OutboxError as exc:
            log.warning("outbox_backup_unusable", path=str(candidate), error=str(exc))
    return None


def move_aside(db_path: Path, label: str) -> list[Path]:
    """Rename the database and its WAL/index to ``<db>.<label>-<UTC time>[-wal|-shm]``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = db_path.with_name(f"{db_path.name}.{label}-{stamp}")
    n = 1
    while base.exists():
        n += 1
        base = db_path.with_name(f"{db_path.name}.{label}-{stamp}.{n}")
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


def install_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` via a fsynced temporary file and an atomic rename."""
    tmp = dest.with_name(dest.name + ".restoring")
    shutil.copyfile(src, tmp)
    _fsync_file(tmp)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def restore_file(src: Path, dest: Path) -> Path:
    """Restore backup ``src`` as the outbox ``dest`` after verifying it.

    Refused while any process has ``dest`` open. An existing ``dest`` (and its WAL, which
    would otherwise be replayed onto the restored file) is moved aside, never deleted.
    """
    info = inspect_backup(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = OutboxLock(dest)
    try:
        lock.try_exclusive("restore the outbox")
        moved = move_aside(dest, "replaced") if dest.exists() else []
        install_copy(src, dest)
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
