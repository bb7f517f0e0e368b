"""The upkeep side of the ``Outbox``: retention, backups, restore and integrity, as one mixin.

What the daemon's ``Maintenance`` thread and the technician's ``outbox`` commands call. Each
method takes the outbox's lock only for the time it writes (``prune`` round by round), and
``check`` reads on a connection of its own.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from pathlib import Path

from buffer import retention
from buffer.backup import backup_rotating, backup_to, restore_file
from buffer.database import write_transaction
from buffer.integrity import check_file, clear_bad_marks
from buffer.outbox_host import OutboxHost
from buffer.records import utc_now


class UpkeepMethods(OutboxHost):
    """Mixed into ``Outbox`` (see ``OutboxHost`` for what it provides)."""

    # -- retention ----------------------------------------------------------------------------

    def prune(
        self, retention_days: float, *, batch: int = 1000, now: datetime | None = None
    ) -> int:
        """Delete delivered rows delivered more than N days ago; never a pending row."""
        before = retention.cutoff(retention_days, batch, now or utc_now())
        count = 0
        for _ in range(retention.MAX_ROUNDS):
            if before is None:
                break
            # The lock per round, not for the whole prune: a month's backlog is a thousand
            # rounds, and the device and delivery workers of this process wait on this lock.
            with self._lock:
                deleted = retention.prune_round(self._db(), self.path, before, batch)
            if deleted is None:
                break
            count += deleted
        if count:
            self._log.info("outbox_pruned", rows=count, retention_days=retention_days)
        return count

    # -- backup, restore, integrity -----------------------------------------------------------

    def backup(self, dest: Path) -> Path:
        """Online, consistent copy to ``dest`` (verified) while others keep writing."""
        return backup_to(self.path, Path(dest))

    def backup_rotating(self, directory: Path, keep: int) -> Path:
        """A timestamped backup in ``directory``, keeping the newest ``keep`` of them."""
        return backup_rotating(self.path, Path(directory), keep)

    @staticmethod
    def restore(src: Path, dest: Path, gateway_id: str | None = None) -> Path:
        """Replace ``dest`` by a verified copy of backup ``src``; the old file is moved aside.

        With ``gateway_id``, a backup holding another gateway's punches is refused.
        """
        return restore_file(Path(src), Path(dest), gateway_id)

    def check(self, full: bool = True) -> builtins.list[str]:
        """Problems found by ``integrity_check`` (or ``quick_check``), counter and mark audits."""
        self._db()  # refuse on a closed outbox
        return check_file(self.path, full, self._busy_timeout)

    def clear_bad_marks(self) -> int:
        """Clear the ``wall_ok`` marks ``check`` finds wrong (no other column); how many.

        Safe at any time: the drain simply checks an unmarked row itself.
        """
        with self._lock:
            conn = self._db()
            with write_transaction(conn, self.path, "clearing wrong wall_ok marks"):
                count = clear_bad_marks(conn)
        if count:
            self._log.warning("outbox_wall_marks_cleared", rows=count)
        return count
