"""The outbox: the only code that writes SQL.

Public API: ``Outbox`` (open, add, deliver, stats, prune, backup/restore, check) and the values
it hands out. See ``buffer.outbox`` for the open/recovery sequence.
"""

from buffer.backup import BackupInfo, inspect_backup, list_backups, newest_good_backup
from buffer.outbox import Outbox
from buffer.records import AddResult, StoredPunch
from buffer.recovery import RecoveryReport
from buffer.schema import SCHEMA_VERSION
from buffer.stats import DeviceStats, OutboxStats

__all__ = [
    "SCHEMA_VERSION",
    "AddResult",
    "BackupInfo",
    "DeviceStats",
    "Outbox",
    "OutboxStats",
    "RecoveryReport",
    "StoredPunch",
    "inspect_backup",
    "list_backups",
    "newest_good_backup",
]
