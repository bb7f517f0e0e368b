"""Opening the configured outbox from a CLI command, alongside a running daemon or not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from buffer import restoring
from buffer.outbox import Outbox
from config import Settings
from config.errors import OutboxError, UsageError

# A CLI write waits this long for the daemon's write transaction to finish (WAL + busy timeout).
CLI_BUSY_TIMEOUT = 15.0


@contextmanager
def explained_permissions(path: Path) -> Iterator[None]:
    """Inside, the wrong user's ``PermissionError`` on the outbox becomes a message what to do."""
    try:
        yield
    except PermissionError as exc:
        raise UsageError(
            f"cannot open the outbox {exc.filename or path}: permission denied; run as root or "
            "as the service user: sudo /opt/punchgate/bin/punchgate ..."
        ) from None


@contextmanager
def opened_outbox(settings: Settings, *, must_exist: bool = True) -> Iterator[Outbox]:
    """The outbox of ``settings``; a reading command refuses to create an empty one."""
    path = settings.agent.outbox_path
    with explained_permissions(path):
        if must_exist and not path.exists() and not restoring.interrupted(path):
            raise OutboxError(
                f"no outbox at {path}: the service creates it when it first starts "
                "(sudo systemctl start punchgate); check agent.state_dir in the config"
            )
        outbox = Outbox.open(
            path,
            settings.agent.gateway_id,
            disk_reserve_bytes=int(settings.outbox.disk_reserve_mb * 2**20),
            busy_timeout=CLI_BUSY_TIMEOUT,
            backup_dir=settings.outbox.backup_dir,
            recover=False,  # as every CLI command: diagnose damage, leave repair to the service
        )
    try:
        yield outbox
    finally:
        outbox.close()
