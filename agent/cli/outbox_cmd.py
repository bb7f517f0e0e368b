"""``punchgate outbox``: stats, integrity check, backup and restore of the local outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.common import ConfigOption, JsonOption, load, print_json, print_table
from agent.cli.outbox_access import explained_permissions
from buffer import Outbox, OutboxStats, restoring
from buffer.integrity import BAD_MARKS
from config import Settings
from config.errors import CorruptOutboxError, OutboxError, UsageError

app = typer.Typer(
    help="Inspect, check, back up and restore the local outbox.", no_args_is_help=True
)

# The CLI may run beside the daemon: wait this long for its write transactions.
_BUSY_TIMEOUT = 15.0


def _open(settings: Settings) -> Outbox:
    """The configured outbox; CLI commands diagnose damage but leave repair to the service."""
    path = settings.agent.outbox_path
    with explained_permissions(path):
        if not path.exists() and not restoring.interrupted(path):  # opening finishes it
            raise OutboxError(
                f"no outbox at {path}: the service creates it when it first starts "
                "(systemctl start punchgate); check agent.state_dir in the config"
            )
        return Outbox.open(
            path,
            settings.agent.gateway_id,
            disk_reserve_bytes=int(settings.outbox.disk_reserve_mb * 2**20),
            busy_timeout=_BUSY_TIMEOUT,
            backup_dir=_backup_dir(settings),
            recover=False,
        )


def _backup_dir(settings: Settings) -> Path:
    return settings.outbox.backup_dir or settings.agent.state_dir / "backups"


@app.command("stats")
def stats(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Pending and delivered counts, oldest pending age, per-device state, sizes, free disk.

    Example: punchgate outbox stats --json
    """
    settings = load(config)
    with _open(settings) as outbox:
        snapshot = outbox.stats()
    if as_json:
        print_json(snapshot.as_dict())
        return
    _print_stats(snapshot)


def _print_stats(s: OutboxStats) -> None:
    age = "-" if s.oldest_pending_age_s is None else f"{s.oldest_pending_age_s:.0f}s"
    rows: list[list[Any]] = [
        ["outbox", s.path],
        ["pending", s.pending],
        ["oldest pending age", age],
        ["delivered (kept)", s.delivered],
        ["last seq / last delivered seq", f"{s.last_seq} / {s.last_delivered_seq}"],
        ["database + WAL", f"{_mib(s.db_size_bytes)} + {_mib(s.wal_size_bytes)}"],
        ["free disk / reserve", f"{_mib(s.free_disk_bytes)} / {_mib(s.disk_reserve_bytes)}"],
        ["disk alarm", "YES: free space now" if s.disk_alarm else "no"],
        ["recoveries", s.recoveries],
    ]
    print_table(["", ""], rows)
    if s.devices:
        typer.echo("")
        print_table(
            ["device", "serial", "last seq", "last punch (UTC)", "watermark"],
            [[d.device_id, d.serial, d.last_seq, d.last_punch_utc, d.watermark] for d in s.devices],
        )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


@app.command("check")
def check(
    config: ConfigOption = None,
    quick: Annotated[bool, typer.Option(help="quick_check instead of integrity_check.")] = False,
    clear_bad_marks: Annotated[
        bool,
        typer.Option(
            "--clear-bad-marks",
            help="Clear the wall_ok marks found wrong (nothing else changes; the drain then "
            "checks those rows' local time itself). Only when nothing else is wrong.",
        ),
    ] = False,
) -> None:
    """Check the outbox's integrity; exit 5 with the problems when anything is wrong.

    Audits SQLite's integrity, the counters and delivered ranges, and the wall_ok marks.
    Example: punchgate outbox check
    """
    settings = load(config)
    try:
        outbox = _open(settings)
    except CorruptOutboxError as exc:
        typer.echo(f"outbox check FAILED: {exc}", err=True)
        raise typer.Exit(CorruptOutboxError.exit_code) from None
    with outbox:
        problems = outbox.check(full=not quick)
        damage = [p for p in problems if not p.startswith(BAD_MARKS)]
        if clear_bad_marks and not damage:
            cleared = outbox.clear_bad_marks()
            typer.echo(f"cleared {cleared} wrong wall_ok mark(s); no other column was changed")
            if cleared:
                problems = outbox.check(full=not quick)
                damage = [p for p in problems if not p.startswith(BAD_MARKS)]
        elif clear_bad_marks:
            typer.echo(
                "--clear-bad-marks: no mark cleared, the outbox has other problems (below): "
                "repair those first",
                err=True,
            )
        snapshot = outbox.stats()
    if problems:
        typer.echo(f"outbox check FAILED for {settings.agent.outbox_path}:", err=True)
        for problem in problems:
            typer.echo(f"  {problem}", err=True)
        if damage:
            typer.echo(
                "Stop punchgate and start it again to recover (the damaged file is kept), or "
                "restore a backup: punchgate outbox restore <backup>",
                err=True,
            )
        raise typer.Exit(OutboxError.exit_code)
    typer.echo(
        f"OK: {settings.agent.outbox_path} passed {'quick_check' if quick else 'integrity_check'}"
        f" ({snapshot.pending} pending, last seq {snapshot.last_seq})"
    )


@app.command("backup")
def backup(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Backup file or directory. Default: a dated file in outbox.backup_dir, "
            "keeping outbox.backup_keep copies.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Copy the outbox consistently while punchgate keeps running, and verify the copy.

    Example: punchgate outbox backup /media/usb/outbox-site1.db
    """
    settings = load(config)
    with _open(settings) as outbox:
        if path is None:
            written = outbox.backup_rotating(_backup_dir(settings), settings.outbox.backup_keep)
        else:
            if path.is_dir():
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                path = path / f"outbox-{settings.agent.gateway_id}-{stamp}.db"
            _check_backup_target(path, settings.agent.outbox_path)
            written = outbox.backup(path)
    typer.echo(f"backup written and verified: {written}")


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_backup_target(path: Path, outbox_path: Path) -> None:
    """Refuse a target whose replacement loses data: the live outbox, or a file of another kind.

    The backup is renamed over ``path``: over the outbox the daemon would keep writing to the
    unlinked old file, and a mistyped path (the config file) would be silently destroyed.
    """
    resolved = path.resolve()
    live = outbox_path.resolve()
    if resolved in {live, live.with_name(live.name + "-wal"), live.with_name(live.name + "-shm")}:
        raise UsageError(
            f"{path} is the outbox itself: give a file elsewhere, ideally on another disk "
            "(punchgate outbox backup /media/usb/outbox.db)"
        )
    if not path.exists():
        return
    try:
        with path.open("rb") as existing:
            header = existing.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise UsageError(f"cannot read {path} before replacing it ({exc.strerror})") from None
    if header and header != _SQLITE_HEADER:
        raise UsageError(
            f"{path} exists and is not an outbox backup: not replaced; give a new file name "
            "or a directory"
        )


@app.command("restore")
def restore(
    path: Annotated[Path, typer.Argument(help="The backup file to restore.")],
    config: ConfigOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the outbox by a verified backup; the current file is moved aside, not deleted.

    Stop the service first (systemctl stop punchgate): restore refuses while it runs.
    Example: punchgate outbox restore /var/lib/punchgate/backups/outbox-20240101T020000000000Z.db
    """
    settings = load(config)
    dest = settings.agent.outbox_path
    if not yes:
        typer.confirm(
            f"Replace {dest} with {path}? Punches stored after that backup are only in the "
            "current file, which is kept beside it.",
            abort=True,
        )
    Outbox.restore(path, dest, settings.agent.gateway_id)
    typer.echo(
        f"restored {path} to {dest}; the previous file (if any) was kept as "
        f"{dest.name}.replaced-<time>. Start punchgate again: terminals are re-read from the "
        "restored watermarks, so their punches since the backup come back."
    )
