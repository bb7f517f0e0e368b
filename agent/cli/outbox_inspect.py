"""``punchgate outbox list|show|export|redeliver``: look into the outbox and re-send from a seq.

Registered on the ``outbox`` group of ``agent.cli.outbox_cmd`` (which owns stats, check, backup
and restore). Reading commands never create an outbox; all work while the daemon runs.
"""

from __future__ import annotations

import csv
import enum
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TextIO, TypeVar
from zoneinfo import ZoneInfo

import typer

from agent.cli.common import ConfigOption, JsonOption, load, print_json, print_table
from agent.cli.outbox_access import opened_outbox
from agent.cli.outbox_cmd import app
from buffer.leftovers import before_boot, cut_short
from buffer.records import COLUMNS, StoredPunch
from config.errors import UsageError
from config.settings import parse_duration

SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only punches at or after this time: '2026-11-22', '2026-11-22 08:00' "
        "(gateway timezone) or a duration back from now: '2h', '7d'.",
        show_default=False,
    ),
]


_AGO = re.compile(r"^\d+(\.\d+)?\s*(s|m|h|d)$")  # "2h", "7d": a duration back from now


class ExportFormat(enum.StrEnum):
    """Export file formats."""

    CSV = "csv"
    JSONL = "jsonl"


def parse_since(text: str, tz: ZoneInfo, now: datetime | None = None) -> datetime:
    """An aware instant from a date, a local date-time, an ISO time with offset, or '2h'/'7d'."""
    value = text.strip()
    now = now or datetime.now(UTC)
    if _AGO.match(value):
        try:
            return now - timedelta(seconds=parse_duration(value))
        except ValueError as exc:
            raise UsageError(f"--since {text!r}: {exc}") from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a date '2026-11-22', a time '2026-11-22 08:00' or a "
            "duration back from now like '2h' or '7d'"
        ) from None
    local = parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed
    try:
        return local.astimezone(UTC)
    except OverflowError:
        # Year 1 or 9999 a few hours off UTC: before (or after) every punch there can be.
        return (datetime.min if parsed.year == 1 else datetime.max).replace(tzinfo=UTC)


def _utf8(value: str | None, name: str) -> str | None:
    """``value`` if it is text SQLite can hold; argv bytes that were not UTF-8 are not."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(
                f"{name} {value!r} is not UTF-8 text: set the terminal (or SSH client) to UTF-8 "
                "and type it again"
            ) from None
    return value


@app.command("list")
def list_punches(
    pending: Annotated[bool, typer.Option("--pending", help="Only undelivered rows.")] = False,
    device: Annotated[
        str | None, typer.Option("--device", "-d", help="Only this device id.", show_default=False)
    ] = None,
    employee: Annotated[
        str | None,
        typer.Option("--employee", "-e", help="Only this employee id.", show_default=False),
    ] = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="Newest N rows.")] = 50,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the newest punches (and void events) in the outbox, oldest first.

    Times are the device's local wall-clock times. Flags: manual (entered by hand, with the
    operator), void (cancels another row), voided, replayed (offered to the broker before),
    and suspect reasons.

    Example: punchgate outbox list --pending --device lobby-1 --since 2h
    """
    settings = load(config)
    when = None if since is None else parse_since(since, ZoneInfo(settings.agent.timezone))
    with opened_outbox(settings) as outbox:
        rows = outbox.list(
            pending_only=pending,
            device=_utf8(device, "--device"),
            employee=_utf8(employee, "--employee"),
            since=when,
            limit=limit,
        )
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    if not rows:
        typer.echo("no punches match")
        return
    voided = {r.void_of for r in rows if r.kind == "void"}
    print_table(
        ["seq", "id", "device", "employee", "local time", "state", "delivery", "flags"],
        [
            [
                r.seq,
                r.id,
                r.device_id,
                r.employee or (f"card:{r.card}" if r.card else "-"),
                "-" if r.device_time is None else f"{r.device_time:%Y-%m-%d %H:%M:%S}",
                r.state,
                r.delivery,
                ", ".join(_flags(r, voided)),
            ]
            for r in rows
        ],
    )


@app.command("show")
def show(
    punch_id: Annotated[str, typer.Argument(metavar="ID", help="Punch id (see outbox list).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every field of one punch, its delivery state, and whether it was voided.

    Example: punchgate outbox show 6f1c2b9e-1d3a-4c55-9a0e-2b7f0c9d8e11 --json
    """
    settings = load(config)
    with opened_outbox(settings) as outbox:
        row = outbox.get(_utf8(punch_id, "ID") or "")
        if row is None:
            raise UsageError(f"no punch with id {punch_id} in the outbox (see: outbox list)")
        voids = outbox.voided_by(row.id)
    data = row.as_dict() | {"voided_by": voids[0] if voids else None}
    if as_json:
        print_json(data)
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        typer.echo(f"{key.ljust(width)}  {'-' if value is None or value == [] else value}")


@app.command("export")
def export(
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="csv (spreadsheets) or jsonl.")
    ] = ExportFormat.CSV,
    since: SinceOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file (default: stdout).", show_default=False
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Export every punch and void event (all fields), in seq order, as CSV or JSON lines.

    Reads page by page, so a month-long outage exports in bounded memory, while the daemon runs.

    Example: punchgate outbox export --format csv --since 2026-11-01 --output punches.csv
    """
    settings = load(config)
    when = None if since is None else parse_since(since, ZoneInfo(settings.agent.timezone))
    with opened_outbox(settings) as outbox:
        rows = outbox.iter_rows(since=when)
        if output is None:
            count = _write_stdout(rows, fmt)
        else:
            with _replacing(output) as stream:
                count = _write(rows, fmt, stream)
    if output is not None:
        typer.echo(f"exported {count} row(s) to {output}", err=True)


@app.command("redeliver")
def redeliver(
    from_seq: Annotated[
        int,
        typer.Option(
            "--from-seq", min=1, max=2**63 - 1, help="Re-send delivered rows with seq >= N."
        ),
    ],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Mark delivered punches from seq N on as pending again, so they are sent once more.

    For a backend that lost data: re-sent punches keep their ids (the backend de-duplicates)
    and carry replayed = true. The running daemon picks them up within seconds.

    Example: punchgate outbox redeliver --from-seq 1200
    """
    settings = load(config)
    with opened_outbox(settings) as outbox:
        count = outbox.redeliver_from(from_seq)
    if as_json:
        print_json({"from_seq": from_seq, "marked_pending": count})
        return
    typer.echo(f"{count} delivered punch(es) from seq {from_seq} on are pending again")


def _write_stdout(rows: Iterable[StoredPunch], fmt: ExportFormat) -> int:
    """``_write`` to stdout; a failing write (``> file`` on a full disk) is one clear line."""
    try:
        count = _write(rows, fmt, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        # What stays buffered would fail again at exit ("Exception ignored", exit 120).
        with suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise UsageError(
            f"writing the export to standard output failed ({exc.strerror}): it is incomplete; "
            "if it went to a file on a full disk, free space there or redirect it to a file on "
            "another disk (or use --output)"
        ) from None
    return count


@contextmanager
def _replacing(output: Path) -> Iterator[TextIO]:
    """A stream whose content replaces ``output`` only when complete (Ctrl-C, a failure: never).

    Written to a temporary file beside it and renamed: a half-written export looks complete to
    whoever opens it, and the previous export at that name would be lost. A FIFO or device
    (``/dev/stdout``) is written directly.
    """
    if output.exists() and not output.is_file():
        with _open(output, lambda: output.open("w", encoding="utf-8", newline="")) as stream:
            yield stream
        return
    target = output.resolve()  # a symlink to a file: replace the file, keep the link
    _remove_cut_short(target)
    # The pid in the name tells the next export whether this one still runs (SIGKILL, a power
    # cut: no cleanup of ours runs, and the file would stay beside the export forever).
    fd, part = _open(
        output,
        lambda: tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}-", suffix=".part", dir=target.parent
        ),
    )
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would have created it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
            # On the disk before "exported" is printed: a USB stick pulled right after must
            # not hold an empty or half-written file (the name and the data are both synced).
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(part, target)
        _fsync_directory(target.parent)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(part)
        if isinstance(exc, OSError):  # ENOSPC, EFBIG (a file size limit), EIO: not a traceback
            raise UsageError(
                f"--output: writing {output} failed ({exc.strerror}): nothing was written there "
                "(a previous file keeps its content); if the disk is full, free space on it or "
                "give a file on another disk"
            ) from None
        raise


# ".NAME.PID-XXXXXXXX.part" (mkstemp's 8 random characters); before the pid was in it, without.
_PART = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.part$")


def _remove_cut_short(target: Path) -> None:
    """Remove the partial files of exports beside ``target`` that were cut short.

    Only those whose export is gone: its pid no longer runs, or it was written before this
    boot. One without a pid (older versions) only for this target and from before this boot:
    eight random letters are no proof that another program's file is ours.
    """
    try:
        names = [p for p in target.parent.iterdir() if p.name.startswith(".")]
    except OSError:
        return  # not readable: creating the export there says why
    for path in names:
        match = _PART.match(path.name)
        if match is None:
            continue
        pid = match["pid"]
        if pid is None:
            dead = match["name"] == target.name and before_boot(path)
        else:
            dead = cut_short(path, pid)
        if not dead:
            continue
        try:
            path.unlink()
        except OSError:
            continue  # another export removed it first, or it is not ours to remove
        typer.echo(f"removed {path}: the partial file of an export that was cut short", err=True)


def _fsync_directory(directory: Path) -> None:
    """Make the rename in ``directory`` durable (a filesystem that cannot: nothing to do)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # EINVAL: fsync of a directory is not supported there; the file itself is synced
    finally:
        os.close(fd)


T = TypeVar("T")


def _open(output: Path, create: Callable[[], T]) -> T:
    try:
        return create()
    except OSError as exc:
        raise UsageError(
            f"--output: cannot write {output} ({exc.strerror}); give a file name in a folder "
            "that exists and that you may write to"
        ) from None


def _write(rows: Iterable[StoredPunch], fmt: ExportFormat, stream: TextIO) -> int:
    count = 0
    if fmt is ExportFormat.JSONL:
        for row in rows:
            stream.write(json.dumps(row.as_dict(), ensure_ascii=False, default=str) + "\n")
            count += 1
        return count
    fields = [*COLUMNS, "replayed"]
    writer = csv.DictWriter(stream, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.as_dict().items()})
        count += 1
    return count


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # shown as text, never evaluated
    return "" if value is None else value


def _flags(row: StoredPunch, voided: set[str | None]) -> list[str]:
    flags = []
    if row.kind == "void":
        flags.append(f"void of {row.void_of} by {row.operator}")
    elif row.source == "manual":
        flags.append(f"manual by {row.operator}")
    if row.id in voided:
        flags.append("voided")
    if row.replayed:
        flags.append(f"replayed x{row.attempts}")
    flags += row.suspect
    return flags
