"""What the ``Outbox`` mixins (delivery, upkeep) need of the ``Outbox`` they are mixed into."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import structlog

from buffer.fairlock import FairRLock


class OutboxHost:
    """The attributes and the connection ``Outbox`` provides to its mixins."""

    path: Path
    _lock: FairRLock
    _busy_timeout: float
    _log: structlog.typing.FilteringBoundLogger

    def _db(self) -> sqlite3.Connection:
        raise NotImplementedError  # Outbox._db
