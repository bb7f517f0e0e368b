"""The ``Outbox``: durable, idempotent storage of punches until the backend has them.

Opening (see :meth:`Outbox.open`):

1. take the shared advisory lock ``<db>.lock`` (restore/recovery need it exclusive);
2. look for damage before SQLite touches the file: a WAL shorter than its shared-memory
   index says (frames cut off), a file that is not a database, a failing ``quick_check``;
3. on damage, with ``recover=True`` (the default): move the database, WAL and index aside as
   ``<db>.corrupt-<UTC time>[-wal|-shm]`` (never deleted), restore the newest backup that
   passes ``integrity_check`` (or start empty when none does), salvage every row still readable
   in a scratch copy of the damaged file and merge it back by id, rewind device watermarks to
   the backup's (so terminals are re-read and lost device punches come back as the ids dedupe),
   and report what happened and the loss window in ``Outbox.recovery`` and the ``recoveries``
   table. A recovery killed half-way is done again at the next open (``<db>.recovering``
   names the damaged files until it is complete). With ``recover=False`` it raises
   ``CorruptOutboxError`` listing these steps;
4. migrate the schema in one transaction (refusing a newer one with ``SchemaTooNewError``).

One connection per ``Outbox``, serialised by a first-come-first-served lock (``FairRLock``), so
the daemon's threads can share it (``stats`` and ``check`` read on short connections of their
own, never waiting for writers);
several processes (daemon + CLI) can write at once through ``BEGIN IMMEDIATE`` + busy timeout.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

import structlog

from buffer import ledger
from buffer.corrections import insert_rows, manual_rows, void_row
from buffer.database import (
    file_identity,
    free_bytes,
    make_state_dir,
    require_same_file,
    translate,
    write_transaction,
)
from buffer.fairlock import FairRLock
from buffer.ingest import Encoded
from buffer.ingest_store import store_batch
from buffer.lockfile import OutboxLock
from buffer.outbox_delivery import DeliveryMethods
from buffer.outbox_upkeep import UpkeepMethods
from buffer.records import (
    SELECT,
    AddResult,
    StoredPunch,
    decode,
    decode_rows,
    iso_utc,
    utc_now,
)
from buffer.recovery import RecoveryReport, open_checked
from buffer.schema import migrate
from buffer.stats import OutboxStats, read_stats
from config.errors import OutboxError
from drivers.base import Punch

log = structlog.get_logger("punchgate.outbox")

_DISK_PROBE_INTERVAL = 1.0  # seconds between free-space probes on the write path


class Outbox(DeliveryMethods, UpkeepMethods):
    """The durable outbox of one gateway; build it with :meth:`open`."""

    def __init__(
        self,
        path: Path,
        gateway_id: str,
        conn: sqlite3.Connection,
        lock: OutboxLock,
        disk_reserve_bytes: int,
        recovery: RecoveryReport | None,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.disk_reserve_bytes = disk_reserve_bytes
        self.recovery = recovery  # what open() repaired, None when the file was healthy
        self._conn: sqlite3.Connection | None = conn
        self._file_lock = lock
        self._lock = FairRLock()  # round by round, long jobs let the others in between
        self._busy_timeout = busy_timeout
        self._disk_alarm = False
        self._disk_probed = 0.0
        self._log = log.bind(outbox=str(path), gateway=gateway_id)
        self._identity = file_identity(path)  # to notice the file deleted or replaced under us

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        gateway_id: str,
        *,
        disk_reserve_bytes: int = 100 * 2**20,
        busy_timeout: float = 10.0,
        backup_dir: Path | None = None,
        recover: bool = True,
    ) -> Outbox:
        """Open (creating or migrating) the outbox; repair it first if it is damaged.

        ``backup_dir`` defaults to ``<dir of path>/backups``, where recovery looks for backups.
        """
        path = Path(path)
        make_state_dir(path.parent)
        backups = backup_dir if backup_dir is not None else path.parent / "backups"
        lock = OutboxLock(path).shared()
        try:
            conn, report = open_checked(path, backups, lock, busy_timeout, recover)
            try:
                found = migrate(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise translate(exc, path, "migrating the schema") from exc
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.close()
            raise
        outbox = cls(path, gateway_id, conn, lock, disk_reserve_bytes, report, busy_timeout)
        outbox._log.info("outbox_opened", schema_from=found, recovered=report is not None)
        outbox._probe_disk(force=True)
        return outbox

    def close(self) -> None:
        """Checkpoint the WAL into the database and close; idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                # PASSIVE never waits: a TRUNCATE/RESTART checkpoint would block the other
                # process's writers while waiting for its readers (a backup, say). The last
                # connection to close checkpoints fully and removes the WAL anyway.
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                self._log.warning("outbox_checkpoint_skipped", error=str(exc))
            finally:
                conn.close()
                self._file_lock.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError(f"the outbox {self.path} is closed; open it again")
        return self._conn

    # -- writing punches ----------------------------------------------------------------------

    def add_punches(
        self,
        punches: Sequence[Punch],
        *,
        device_id: str | None = None,
        watermark: dict[str, Any] | None = None,
        received_at: datetime | None = None,
        device_serial: str | None = None,
    ) -> AddResult:
        """Store a batch in one transaction; re-read punches are ignored by id.

        When ``watermark`` is given it is stored for ``device_id`` (default: the batch's only
        device) in the same transaction, so it never covers punches that were not stored.
        ``device_serial`` records the terminal's serial even when the batch is empty.
        """
        received = iso_utc(received_at or utc_now())
        wm_device = self._watermark_device(punches, device_id, watermark, device_serial)
        with self._lock:
            # Encoded under the lock: a terminal's full log encodes to ~60 MB, and built while
            # queueing there was one such copy per waiting terminal (40 at a site's first start).
            batch = Encoded(self.gateway_id, punches, received)
            conn = self._db()
            with write_transaction(conn, self.path, "storing punches"):
                inserted = store_batch(
                    conn, batch, punches, received, wm_device, device_serial, watermark
                )
                require_same_file(self.path, self._identity)  # else: roll back, refuse
            self._probe_disk()
        return AddResult(inserted=inserted, duplicates=len(batch.ids) - inserted, ids=batch.ids)

    def add_manual(
        self, punch: Punch, *, operator: str, reason: str, entered_at: datetime | None = None
    ) -> StoredPunch:
        """Store a correction punch entered by a technician (random id, source "manual")."""
        rows = manual_rows(self.gateway_id, [(punch, reason)], operator, entered_at)
        return self._store_corrections(rows, "storing a manual punch")[0]

    def add_manual_many(
        self,
        entries: Sequence[tuple[Punch, str]],
        *,
        operator: str,
        entered_at: datetime | None = None,
    ) -> builtins.list[StoredPunch]:
        """Store correction punches, each with its reason, in one transaction: all or none.

        For a batch typed from a paper sheet (``punch import``): a failure half-way leaves the
        outbox as it was, so the technician fixes the file and imports it again.
        """
        rows = manual_rows(self.gateway_id, entries, operator, entered_at)
        if not rows:
            return []
        return self._store_corrections(rows, "storing manual punches")

    def add_void(self, target_id: str, *, operator: str, reason: str) -> StoredPunch:
        """Record that punch ``target_id`` is void: a new row; nothing is ever deleted."""
        row = void_row(self.gateway_id, self.get(target_id), target_id, operator, reason)
        return self._store_corrections([row], "storing a void event", void_of=target_id)[0]

    def _store_corrections(
        self, rows: builtins.list[tuple[Any, ...]], what: str, void_of: str | None = None
    ) -> builtins.list[StoredPunch]:
        with self._lock:
            conn = self._db()
            with write_transaction(conn, self.path, what):
                insert_rows(conn, rows, void_of)
                require_same_file(self.path, self._identity)
            self._probe_disk()
        stored = [self.get(values[0]) for values in rows]
        return [s for s in stored if s is not None]

    @staticmethod
    def _watermark_device(
        punches: Sequence[Punch],
        device_id: str | None,
        watermark: dict[str, Any] | None,
        serial: str | None,
    ) -> str | None:
        if watermark is None and serial is None:
            return None
        if device_id is not None:
            return device_id
        devices = {p.device_id for p in punches}
        if len(devices) != 1:
            raise ValueError("pass device_id: the watermark's device is ambiguous for this batch")
        return devices.pop()

    # -- per-device state ---------------------------------------------------------------------

    def watermark(self, device_id: str) -> dict[str, Any] | None:
        """What has been read from this terminal, as last stored with its punches."""
        row = self._read_one("SELECT watermark FROM devices WHERE device_id = ?", (device_id,))
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def device_serial(self, device_id: str) -> str | None:
        """The serial last seen for this device (to notice a swapped terminal)."""
        row = self._read_one("SELECT serial FROM devices WHERE device_id = ?", (device_id,))
        return None if row is None else row[0]

    # -- reading ------------------------------------------------------------------------------

    def get(self, punch_id: str) -> StoredPunch | None:
        """One row by id."""
        row = self._read_one(f"{SELECT} WHERE id = ?", (punch_id,))
        return None if row is None else decode(row)

    def voided_by(self, punch_id: str) -> builtins.list[str]:
        """Ids of the void events of ``punch_id``, oldest first (indexed: any outbox size)."""
        rows = self._read_all("SELECT id FROM punches WHERE void_of = ? ORDER BY seq", (punch_id,))
        return [row[0] for row in rows]

    def list(
        self,
        pending_only: bool = False,
        device: str | None = None,
        employee: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[StoredPunch]:
        """The newest ``limit`` rows matching the filters, in seq order.

        ``since`` compares with the punch's UTC time.
        """
        where, params = [], []
        if pending_only:
            where.append(ledger.PENDING_SQL)
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        if employee is not None:
            where.append("employee = ?")
            params.append(employee)
        if since is not None:
            where.append("time_utc >= ?")
            params.append(iso_utc(since))
        sql = SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read_all(f"{sql} ORDER BY seq DESC LIMIT ?", (*params, int(limit)))
        return decode_rows(reversed(rows))

    def iter_rows(
        self, *, since: datetime | None = None, page: int = 1000
    ) -> Iterator[StoredPunch]:
        """Every row (``since``: punch UTC time at or after) in seq order, read page by page.

        For exports of a long outage: memory stays at one page, and no lock is held between
        pages, so the daemon keeps writing meanwhile (rows added during the export may appear).
        """
        after = 0
        where = "" if since is None else " AND time_utc >= ?"
        extra: tuple[Any, ...] = () if since is None else (iso_utc(since),)
        while True:
            rows = self._read_all(
                f"{SELECT} WHERE seq > ?{where} ORDER BY seq LIMIT ?", (after, *extra, int(page))
            )
            for row in rows:
                yield decode(row)
            if len(rows) < page:
                return
            after = rows[-1][1]  # COLUMNS[1] is seq

    def _read_one(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._lock:
            try:
                return self._db().execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                raise translate(exc, self.path, "reading the outbox") from exc

    def _read_all(self, sql: str, params: tuple[Any, ...]) -> builtins.list[Any]:
        with self._lock:
            try:
                return self._db().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc, self.path, "reading the outbox") from exc

    # -- stats, disk ---------------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        """Counts, ages, per-device state, sizes and the disk alarm; O(devices), not O(rows).

        Read on a connection of its own (as ``check``), without the lock this process's writers
        share: a terminal's full log is one transaction of seconds, 40 of them queue after a
        long outage, and the daemon's status write (on the thread that feeds the watchdog)
        must not wait for them. It sees their last commit.
        """
        self._probe_disk(force=True)
        self._db()  # refuse on a closed outbox
        require_same_file(self.path, self._identity)  # not another file's figures, or none
        try:
            # mode=rw: never create an empty file where the outbox was (moved aside meanwhile).
            conn = sqlite3.connect(
                f"file:{pathname2url(str(self.path))}?mode=rw",
                uri=True,
                timeout=self._busy_timeout,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise translate(exc, self.path, "reading outbox stats") from exc
        try:
            return read_stats(conn, self.path, self.disk_reserve_bytes, self._disk_alarm)
        finally:
            conn.close()

    @property
    def disk_alarm(self) -> bool:
        """True while free disk is below the reserve (punches are still stored, never evicted)."""
        self._probe_disk()
        return self._disk_alarm

    def _probe_disk(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._disk_probed < _DISK_PROBE_INTERVAL:
            return
        self._disk_probed = now
        free = free_bytes(self.path.parent)
        alarm = 0 <= free < self.disk_reserve_bytes
        if alarm != self._disk_alarm:
            self._disk_alarm = alarm
            if alarm:
                self._log.error(
                    "outbox_disk_low",
                    free_bytes=free,
                    reserve_bytes=self.disk_reserve_bytes,
                    action="free disk space; punches are still stored and never evicted",
                )
            else:
                self._log.info("outbox_disk_ok", free_bytes=free)
