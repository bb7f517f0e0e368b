"""Opening with damage detection, and recovery: quarantine, restore, salvage, merge, report."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sqlite3
import tempfile
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from buffer import ledger, restoring
from buffer.backup import (
    SEQ_GAP_AFTER_LOSS,
    aside_name,
    install_copy,
    move_aside,
    newest_good_backup,
)
from buffer.database import (
    connect,
    fsync_dir,
    shm_path,
    translate,
    wal_path,
    write_transaction,
)
from buffer.integrity import sqlite_problems, wal_cut_short
from buffer.lockfile import OutboxLock
from buffer.records import STORED_COLUMNS, iso_utc, utc_now
from buffer.salvage import RowSink, SalvageResult, salvage
from buffer.schema import migrate
from buffer.walframes import wal_damaged, wal_tail_unsynced
from config.errors import CorruptOutboxError

log = structlog.get_logger("punchgate.outbox")

_SQLITE_READONLY = 8  # a read-only connection cannot roll back a hot journal

RECOVERY_STEPS = (
    "To recover: stop every punchgate process using it, then start punchgate again (opening "
    "the outbox moves the damaged file aside as <file>.corrupt-<time>, restores the newest "
    "good backup, salvages readable rows and rewinds device watermarks so terminals are "
    "re-read). Or by hand: punchgate outbox restore <backup>."
)


@dataclass(frozen=True)
class RecoveryReport:
    """What recovery found and did; also stored as JSON in the ``recoveries`` table."""

    problem: str
    detected_at: str
    quarantined: list[str]
    backup: str | None
    backup_last_seq: int | None
    salvaged_rows: int
    merged_rows: int
    marked_delivered: int
    unreadable_seq_ranges: list[tuple[int, int]]
    tail_lost: bool
    seq_before: int
    seq_after: int
    loss_window_start: str | None
    loss_window_end: str | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def summary(self) -> str:
        """One paragraph for a technician."""
        text = (
            f"outbox recovered from: {self.problem}. Damaged files kept as "
            f"{', '.join(self.quarantined) or '(none)'}; restored "
            f"{self.backup or 'an empty outbox (no good backup found)'}; salvaged "
            f"{self.salvaged_rows} readable rows ({self.merged_rows} were missing from the "
            "backup and were merged back)."
        )
        if self.loss_window_start or self.loss_window_end or self.tail_lost:
            text += (
                f" Punches received between {self.loss_window_start or 'the start'} and "
                f"{self.loss_window_end or 'now'} may be lost: device punches are re-read from "
                "the terminals (watermarks rewound), manual punches from that window must be "
                "entered again."
            )
        return text


def open_checked(
    path: Path, backup_dir: Path, lock: OutboxLock, busy_timeout: float, recover: bool
) -> tuple[sqlite3.Connection, RecoveryReport | None]:
    """Connect after checking for damage; recover first when allowed (see ``buffer.outbox``)."""
    first = lock.first_or_shared()
    try:
        if first:
            restoring.finish_interrupted(path)  # before anything looks at the file
        problem = _find_problem(path, first, busy_timeout)
        report = None
        if problem is not None:
            if not recover:
                raise CorruptOutboxError(f"{path}: {problem}. {RECOVERY_STEPS}")
            if not first:
                raise CorruptOutboxError(
                    f"{path}: {problem}. It is open in another process, so it cannot be "
                    f"repaired now. {RECOVERY_STEPS}"
                )
            report = recover_outbox(path, backup_dir, problem, busy_timeout)
        conn = connect(path, busy_timeout)
    finally:
        if first:
            lock.downgrade()
    return conn, report


_marker = restoring.recovery_marker


def _find_problem(path: Path, first: bool, busy_timeout: float) -> str | None:
    if _marker(path).exists():
        # Killed half-way (start timeout, power cut): whatever is at ``path`` now is an empty
        # or a restored file without the salvaged rows, and its seq counter is behind.
        return f"a recovery of the outbox was interrupted ({_marker(path)} is still there)"
    if not path.exists():
        if first and wal_path(path).exists():
            return f"the database file is missing but its WAL {wal_path(path)} is present"
        return None
    if first:
        # Only meaningful while nobody writes: a live writer may checkpoint and truncate the
        # WAL between our two reads. Whoever opened first has already checked.
        cut = wal_cut_short(path)
        if cut and wal_tail_unsynced(path):  # a power cut's tail: SQLite drops it, rightly
            cut = None
        cut = cut or wal_damaged(path)
        if cut:
            return cut
    try:
        conn = _diagnosing(path, busy_timeout)
    except CorruptOutboxError as exc:
        return str(exc.__cause__ or exc)
    try:
        problems = sqlite_problems(conn, full=False)
    finally:
        conn.close()
    return "; ".join(problems[:5]) if problems else None


def _diagnosing(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection for the diagnosis: it never writes into the file it diagnoses.

    The last read-write connection to close checkpoints the WAL into the database file and
    deletes the WAL: a damaged file would be quarantined changed, without its WAL. A file with
    a hot rollback journal (never one of ours in WAL mode) needs a writer to roll it back.
    """
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise translate(exc, path, "open") from exc
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_READONLY:
            return connect(path, busy_timeout)
        raise translate(exc, path, "open") from exc
    return conn


def recover_outbox(
    path: Path, backup_dir: Path, problem: str, busy_timeout: float
) -> RecoveryReport:
    """Quarantine ``path``, restore the newest good backup, merge salvaged rows, report."""
    detected = utc_now()
    log.error("outbox_damaged", outbox=str(path), problem=problem)
    marker = _marker(path)
    if marker.exists():  # done again from the damaged file the interrupted run moved aside
        problem, noted = _read_marker(marker)
        base = noted[0] if noted else aside_name(path, "corrupt")
        if not path.exists() or not any(p.exists() for p in noted):
            # Cut before or during the move aside: what is at ``path`` is the damaged file
            # (or its WAL, when only the database was moved yet). Finish the move.
            restoring.finish_move(path, base)
        else:
            # What that run left at ``path`` holds nothing of its own (a copy of the backup,
            # rows salvaged from the damaged file: both kept), and nothing was stored in it
            # since. Removed, not kept: a recovery failing at every restart (a full disk)
            # would keep a copy per attempt.
            for leftover in (path, wal_path(path), shm_path(path)):
                leftover.unlink(missing_ok=True)
        quarantined = damaged = [p for p in (base, wal_path(base), shm_path(base)) if p.exists()]
    else:
        base = aside_name(path, "corrupt")
        damaged = [base, wal_path(base), shm_path(base)]
        _write_marker(marker, problem, damaged)
        quarantined = damaged = move_aside(path, "corrupt", base)
    damaged_mtime = max((p.stat().st_mtime for p in damaged), default=None)
    backup = newest_good_backup(backup_dir)
    if backup is not None:
        install_copy(backup.path, path)
    conn = connect(path, busy_timeout)
    try:
        migrate(conn)
        salvaged, merged, delivered, seq_before, seq_after, tail_lost = _merge(
            conn, path, quarantined, problem
        )
        start, end = _loss_window(conn, salvaged, tail_lost, damaged_mtime)
        notes = []
        if salvaged.error:
            notes.append(f"nothing could be salvaged: {salvaged.error}")
        if seq_after > max(seq_before, salvaged.max_seq, salvaged.counter or 0):
            notes.append(
                f"sequence advanced from {seq_before} to {seq_after} so that numbers possibly "
                "used by lost rows are never reused"
            )
        report = RecoveryReport(
            problem=problem,
            detected_at=iso_utc(detected),
            quarantined=[str(p) for p in quarantined],
            backup=None if backup is None else str(backup.path),
            backup_last_seq=None if backup is None else backup.last_seq,
            salvaged_rows=salvaged.count,
            merged_rows=merged,
            marked_delivered=delivered,
            unreadable_seq_ranges=salvaged.unreadable,
            tail_lost=tail_lost,
            seq_before=seq_before,
            seq_after=seq_after,
            loss_window_start=start,
            loss_window_end=end,
            notes=notes,
        )
        with write_transaction(conn, path, "recording the recovery"):
            conn.execute(
                "INSERT INTO recoveries(at, report) VALUES (?, ?)",
                (report.detected_at, json.dumps(report.as_dict())),
            )
    finally:
        conn.close()
    marker.unlink()
    fsync_dir(path.parent)
    log.error("outbox_recovered", outbox=str(path), summary=report.summary())
    return report


def _write_marker(marker: Path, problem: str, damaged: list[Path]) -> None:
    """Durably note the problem and where the damaged files go, before moving them."""
    tmp = marker.with_name(marker.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump({"problem": problem, "damaged": [str(p) for p in damaged]}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, marker)
    fsync_dir(marker.parent)


def _read_marker(marker: Path) -> tuple[str, list[Path]]:
    """The first run's problem and the names it moves the damaged files to (there or not)."""
    try:
        noted = json.loads(marker.read_text(encoding="utf-8"))
        problem, damaged = str(noted["problem"]), [Path(p) for p in noted["damaged"]]
    except (OSError, ValueError, KeyError, TypeError):
        return f"a recovery was interrupted; its note {marker} is unreadable", []
    return f"{problem} (recovery interrupted, done again)", damaged


def _salvage_copy(quarantined: list[Path], outbox: Path, sink: RowSink) -> SalvageResult:
    """Salvage from a scratch copy (database + WAL, no index) into ``sink``: the evidence
    stays as found."""
    db = next((p for p in quarantined if not p.name.endswith(("-wal", "-shm"))), None)
    if db is None:
        return SalvageResult(error="no database file to salvage from")
    prefix = f".salvage-{outbox.name}-"
    # Left by a recovery killed during its salvage (a power cut, the watchdog): a full copy of
    # the damaged file each. Nobody else uses them: recovery holds the outbox lock exclusive.
    for left in outbox.parent.glob(glob.escape(prefix) + "?" * 8):
        shutil.rmtree(left, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=outbox.parent))
    try:
        copy = scratch / "outbox.db"
        shutil.copyfile(db, copy)
        if wal_path(db).exists():
            shutil.copyfile(wal_path(db), wal_path(copy))
        return salvage(copy, sink)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_MARK_PIECE = 50_000  # seqs per ledger.mark call: it builds a set of the numbers it is given


def _merge(
    conn: sqlite3.Connection, path: Path, quarantined: list[Path], problem: str
) -> tuple[SalvageResult, int, int, int, int, bool]:
    """Salvage the damaged file and merge its rows by id, chunk by chunk (never all in memory).

    Returns (salvage result, merged, marked delivered, seq before, seq after, tail lost).
    """
    cols, marks = ", ".join(STORED_COLUMNS), ", ".join("?" for _ in STORED_COLUMNS)
    insert = f"INSERT INTO punches ({cols}) VALUES ({marks})"  # noqa: S608 - constants only
    counts = {"merged": 0, "delivered": 0}
    with write_transaction(conn, path, "merging salvaged punches"):
        seq_before = int(conn.execute("SELECT value FROM counters WHERE name='seq'").fetchone()[0])
        now = iso_utc(utc_now())
        # Rows whose seq the restored file gives another punch: numbered after every salvaged
        # row once all are read (salvaged seqs are distinct, so nothing else can take them).
        renumber: list[tuple[Any, ...]] = []
        # Delivered in the damaged file: delivered here too, marked once every row is in (a
        # range may only close over rows that exist). Kept as runs, not a number per row.
        runs: list[list[int]] = []

        def deliver(seq: int) -> None:
            if runs and runs[-1][1] + 1 == seq:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])

        def merge_chunk(rows: list[tuple[Any, ...]]) -> None:
            for row in rows:
                values, delivered_at = list(row[:-1]), row[-1]
                found = conn.execute("SELECT seq FROM punches WHERE id = ?", (values[0],))
                hit = found.fetchone()
                if hit is not None:
                    if delivered_at is not None and ledger.covering(conn, hit[0]) is None:
                        deliver(hit[0])
                        counts["delivered"] += 1
                    continue
                taken = conn.execute("SELECT 1 FROM punches WHERE seq = ?", (values[1],))
                if taken.fetchone() is not None:
                    renumber.append(row)
                    continue
                conn.execute(insert, values)
                counts["merged"] += 1
                if delivered_at is not None:
                    deliver(values[1])

        salvaged = _salvage_copy(quarantined, path, merge_chunk)
        seq = max(seq_before, salvaged.max_seq, salvaged.counter or 0)
        for row in renumber:
            seq += 1
            conn.execute(insert, [row[0], seq, *row[2:-1]])
            counts["merged"] += 1
            if row[-1] is not None:
                deliver(seq)
        for first, last in runs:
            for lo in range(first, last + 1, _MARK_PIECE):
                ledger.mark(conn, range(lo, min(lo + _MARK_PIECE - 1, last) + 1), now)
        # The tail is trustworthy only if the damaged file's own counter was read and every
        # row up to it was readable; a WAL cut loses the newest commits by definition.
        tail_lost = (
            salvaged.counter is None
            or "WAL" in problem
            or any(b >= salvaged.counter for _, b in salvaged.unreadable)
        )
        if tail_lost:
            seq += SEQ_GAP_AFTER_LOSS
        conn.execute("UPDATE counters SET value = ? WHERE name = 'seq'", (seq,))
        # Authoritative recount once, after the merge, instead of tracking each case.
        covered = ledger.delivered_rows(conn)
        total = conn.execute("SELECT count(*) FROM punches").fetchone()[0]
        for name, value in (
            ("pending", total - covered),
            ("delivered", covered),
            ("last_delivered_seq", ledger.last_delivered_seq(conn)),
        ):
            conn.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
    return salvaged, counts["merged"], counts["delivered"], seq_before, seq, tail_lost


def _loss_window(
    conn: sqlite3.Connection,
    salvaged: SalvageResult,
    tail_lost: bool,
    damaged_mtime: float | None,
) -> tuple[str | None, str | None]:
    """When possibly-lost punches were received: from the last intact row before the first
    damage to the first intact row after the last damage (or the damaged file's last write)."""
    if not salvaged.unreadable and not tail_lost:
        return None, None
    first_bad = salvaged.unreadable[0][0] if salvaged.unreadable else salvaged.max_seq + 1
    before = conn.execute(
        "SELECT received_at FROM punches WHERE seq < ? ORDER BY seq DESC LIMIT 1", (first_bad,)
    ).fetchone()
    end: str | None = None
    if tail_lost:
        if damaged_mtime is not None:
            end = iso_utc(datetime.fromtimestamp(damaged_mtime, UTC))
    elif salvaged.unreadable:
        after = conn.execute(
            "SELECT received_at FROM punches WHERE seq > ? ORDER BY seq LIMIT 1",
            (salvaged.unreadable[-1][1],),
        ).fetchone()
        end = None if after is None else after[0]
    return (None if before is None else before[0]), end
