"""A restore cut short is finished at the next open: the note says where the old file went.

``outbox restore`` moves the old outbox aside and then renames the verified copy into place.
A power cut between the two left no outbox at all: the next start created an empty one that
numbered punches from 1 again, and every pending punch stayed in the file moved aside, which
nothing reads. The note, written once the copy is complete and before anything is moved,
lets whoever opens the outbox next finish the job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

from buffer.database import fsync_dir, shm_path, wal_path

log = structlog.get_logger("punchgate.outbox")


def note_path(dest: Path) -> Path:
    """Present from before the old outbox is moved aside until the copy is in place."""
    return dest.with_name(dest.name + ".restore-note")


def copy_path(dest: Path) -> Path:
    """Where the verified copy waits before it is renamed to ``dest``."""
    return dest.with_name(dest.name + ".restoring")


def interrupted(dest: Path) -> bool:
    """Whether a restore of ``dest`` was cut short (the next open finishes it)."""
    return note_path(dest).exists()


def write_note(dest: Path, source: Path, aside: Path) -> None:
    """Durably note that the complete copy of ``source`` replaces ``dest``, moved to ``aside``."""
    note = note_path(dest)
    tmp = note.with_name(note.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump({"source": str(source), "aside": str(aside)}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, note)
    fsync_dir(dest.parent)


def recovery_marker(path: Path) -> Path:
    """Present from the moment recovery moves the damaged file aside until it is complete."""
    return path.with_name(path.name + ".recovering")


def clear_note(dest: Path) -> None:
    """The restore is complete: remove its note, durably.

    An interrupted recovery's marker goes first: the backup restored by hand replaces what
    that recovery would have built (its damaged files stay kept), and the next start would
    otherwise delete the restored file to do the recovery again.
    """
    marker = recovery_marker(dest)
    if marker.exists():
        marker.unlink()
        log.warning("outbox_recovery_superseded", dest=str(dest), note="a backup was restored")
    note_path(dest).unlink(missing_ok=True)
    fsync_dir(dest.parent)


def finish_move(path: Path, base: Path) -> None:
    """Move the database, WAL and index still at ``path`` to ``base``; never over a moved one."""
    pairs = ((path, base), (wal_path(path), wal_path(base)), (shm_path(path), shm_path(base)))
    for src, dst in pairs:
        if src.exists() and not dst.exists():
            os.replace(src, dst)
    fsync_dir(path.parent)


def finish_interrupted(dest: Path) -> bool:
    """Finish a restore of ``dest`` cut short; the caller holds the outbox lock exclusive.

    Returns whether there was one.
    """
    note = note_path(dest)
    if not note.exists():
        # A copy cut short before it was complete (no note yet): a full-size file otherwise
        # left for ever. Nobody writes it now: restore and recovery hold the lock exclusive.
        copy_path(dest).unlink(missing_ok=True)
        return False
    try:
        noted = json.loads(note.read_text(encoding="utf-8"))
        source, aside = str(noted["source"]), Path(noted["aside"])
    except (OSError, ValueError, KeyError, TypeError):
        source, aside = "(unreadable note)", None
    copy = copy_path(dest)
    if copy.exists() and aside is not None:
        finish_move(dest, aside)  # whatever of the old outbox was not moved yet
        os.replace(copy, dest)
    clear_note(dest)
    log.warning(
        "outbox_restore_finished",
        dest=str(dest),
        source=source,
        moved_aside=None if aside is None else str(aside),
        note="a restore was cut short (power cut, kill); it was completed at this open",
    )
    return True
