"""``punchgate punch``: manual correction punches, voids and paper-sheet imports.

Manual punches enter the outbox like any other (source ``manual``, with operator, reason and
entry time) and flow to the backend the same way. Nothing is ever deleted: a wrong punch is
cancelled by a void event. Works whether the daemon runs or not (the outbox takes writers
from several processes).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import ConfigOption, JsonOption, load, print_json
from agent.cli.outbox_access import opened_outbox
from agent.manual import (
    STATES,
    Checked,
    ManualRequest,
    ManualValidator,
    Problem,
    default_operator,
    make_online_probe,
    operator_problem,
    reason_problem,
    text_problem,
)
from agent.wiring import build_driver
from buffer.outbox import Outbox
from buffer.records import StoredPunch
from config.errors import UsageError
from config.loader import not_utf8
from drivers.base import Punch, Source

app = typer.Typer(
    help="Manual correction punches for offline terminals: add, void, import.",
    no_args_is_help=True,
)

USAGE_ERROR = UsageError.exit_code  # a refused punch is a usage error (config/errors.py)
COLUMNS = ("employee", "device", "at", "state", "reason")
REQUIRED_COLUMNS = ("employee", "device", "at", "reason")
MAX_IMPORT_ROWS = 10_000  # a paper sheet, not a data migration
MAX_IMPORT_BYTES = 32 * 2**20  # 10,000 rows with long reasons; more is the wrong file
_TWIN_ROWS = 100_000  # one employee's rows since the sheet's first time: a month holds hundreds

ByOption = Annotated[
    str | None,
    typer.Option(
        "--by", help="Operator name recorded with the punch. Default: $SUDO_USER, else you."
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Store despite a punch of the same employee nearby or the device being online.",
    ),
]


@app.command("add")
def add(
    employee: Annotated[
        str, typer.Option("--employee", "-e", help="Employee id as on the terminal.")
    ],
    device: Annotated[str, typer.Option("--device", "-d", help="Device id from the config.")],
    at: Annotated[str, typer.Option("--at", help="Local time at the device: 'YYYY-MM-DD HH:MM'.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why it is entered by hand.")],
    state: Annotated[
        str, typer.Option("--state", "-s", help=f"One of: {', '.join(STATES)}.")
    ] = "unknown",
    by: ByOption = None,
    force: ForceOption = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store one correction punch for a terminal that was offline.

    The time is read in the device's timezone. Refused (exit 2): unknown device, a time in the
    future or older than [manual].max_age. Refused unless --force: a punch of the same employee
    within [manual].duplicate_window, or the device is online right now.

    Example: punchgate punch add -e 1042 -d lobby-1 --at "2026-11-22 08:03" -s in -r "paper sheet"
    """
    settings = load(config)
    operator = by if by is not None else default_operator()
    request = ManualRequest(employee, device, at, state, reason)
    with opened_outbox(settings, must_exist=False) as outbox:
        validator = ManualValidator(
            settings, outbox, online=make_online_probe(settings, build_driver)
        )
        checked = validator.check(request)
        problems = _operator_problems(operator) + checked.blocking(force)
        if problems:
            _refuse([p.text() for p in problems], as_json)
        assert checked.punch is not None
        stored = outbox.add_manual(
            checked.punch, operator=operator, reason=reason.strip(), entered_at=validator.now
        )
    forced = [p.message for p in checked.problems if p.forceable]
    if as_json:
        print_json(
            {"ok": True, "punch": stored.as_dict(), "forced": forced, "notes": checked.notes}
        )
        return
    typer.echo(f"stored manual punch {stored.id} (seq {stored.seq})")
    config_device = settings.device(device)
    assert config_device is not None  # validated above
    typer.echo("  " + _describe(stored, settings.device_timezone(config_device).key))
    for note in checked.notes:
        typer.echo(f"  note: {note}")
    for message in forced:
        typer.echo(f"warning (stored because of --force): {message}", err=True)


@app.command("void")
def void(
    punch_id: Annotated[str, typer.Argument(metavar="ID", help="Id of the punch to cancel.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why it is cancelled.")],
    by: ByOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a punch by recording a void event for it; nothing is ever deleted.

    The void flows to the backend like a punch (kind "void", void_of = ID).

    Example: punchgate punch void 6f1c2b9e-1d3a-4c55-9a0e-2b7f0c9d8e11 --reason "entered twice"
    """
    settings = load(config)
    operator = by if by is not None else default_operator()
    problems = [
        p
        for p in (
            text_problem("punch id", punch_id),
            reason_problem(reason, why="it is cancelled"),
            operator_problem(operator),
        )
        if p is not None
    ]
    if problems:
        _refuse([p.text() for p in problems], as_json)
    with opened_outbox(settings) as outbox:
        stored = outbox.add_void(punch_id, operator=operator, reason=reason.strip())
    if as_json:
        print_json({"ok": True, "void": stored.as_dict()})
        return
    typer.echo(f"voided {punch_id}: void event {stored.id} (seq {stored.seq}) by {operator}")


@app.command("import")
def import_csv(
    file: Annotated[
        Path, typer.Argument(metavar="FILE.csv", help="CSV: employee,device,at,state,reason.")
    ],
    by: ByOption = None,
    force: ForceOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row, store nothing.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import correction punches typed from a paper sheet: all rows or none.

    The first line names the columns: employee, device, at, state (may be empty) and reason.
    Every row is checked like 'punch add'; all problems are listed with their row (line)
    numbers and nothing is stored until the whole file is clean. Run again, it skips the rows
    already imported (an identical manual punch, not voided, is in the outbox), with or
    without --force, so a re-run after a timeout stores nothing twice.

    Example: punchgate punch import sheet-2026-11-22.csv --by alice --dry-run
    """
    settings = load(config)
    operator = by if by is not None else default_operator()
    requests, problems = read_sheet(file)
    problems += _operator_problems(operator)
    with opened_outbox(settings, must_exist=False) as outbox:
        validator = ManualValidator(
            settings, outbox, online=make_online_probe(settings, build_driver)
        )
        checked = validator.check_batch(requests)
        # A re-run (after a timeout, or unsure it went through) must not send HR every row twice.
        already = already_imported(outbox, checked)
        total_rows = len(checked)
        checked = [item for order, item in enumerate(checked) if order not in already]
        for item in checked:
            problems += [
                Problem(p.text(item.request.row), p.forceable) for p in item.blocking(force)
            ]
        if problems:
            _refuse([p.message for p in problems], as_json, what=f"{file}: nothing imported")
        forced = [
            p.text(item.request.row).removesuffix(" (use --force to store it anyway)")
            for item in checked
            for p in item.problems
            if p.forceable
        ]
        stored: list[StoredPunch] = []
        if not dry_run and checked:
            stored = outbox.add_manual_many(
                [(_punch(item), item.request.reason.strip()) for item in checked],
                operator=operator,
                entered_at=validator.now,
            )
    if as_json:
        print_json(
            {
                "ok": True,
                "dry_run": dry_run,
                "rows": total_rows,
                "forced": forced,
                "punches": [s.as_dict() for s in stored],
                "already_imported": [
                    {"row": row, "id": twin.id, "seq": twin.seq} for row, twin in already.values()
                ],
            }
        )
        return
    if already:
        named = ", ".join(f"row {row}" for row, _ in list(already.values())[:10])
        more = f" and {len(already) - 10} more" if len(already) > 10 else ""
        typer.echo(
            f"{file}: {len(already)} row(s) already imported, skipped: {named}{more} "
            "(an identical manual punch is in the outbox)"
        )
    if dry_run:
        typer.echo(f"{file}: {len(checked)} row(s) valid; nothing stored (dry run)")
    elif stored:
        typer.echo(
            f"{file}: imported {len(stored)} manual punch(es), seq {stored[0].seq}-"
            f"{stored[-1].seq}, operator {operator}"
        )
    elif already:
        typer.echo(f"{file}: nothing new to import")
    else:
        typer.echo(f"{file}: no rows to import")
    for message in forced:
        typer.echo(f"warning (--force): {message}", err=True)


def read_sheet(file: Path) -> tuple[list[ManualRequest], list[Problem]]:
    """Requests from a CSV file, with the header and row-shape problems found on the way.

    Fields are separated by commas, or by semicolons when the header has no comma (spreadsheets
    in many European locales export so). Row numbers are the file's lines, as an editor shows
    them: only CR and LF end a line, and a row with a quoted line break is named by its first.
    """
    text = _read_text(file)
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise UsageError(f"{file}: line 1: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    twice = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown or twice:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        parts += [f"column {c} appears more than once" for c in twice]
        raise UsageError(
            f"{file}: line 1: {'; '.join(parts)}; the first line must name the columns "
            f"{','.join(COLUMNS)} (state may be left empty)"
        )
    requests: list[ManualRequest] = []
    problems: list[Problem] = []
    while True:
        line = reader.line_num + 1  # where the next row starts (blank lines are rows too)
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise UsageError(f"{file}: line {line}: {exc}; nothing imported") from None
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue  # blank lines between blocks of a sheet
        if len(requests) >= MAX_IMPORT_ROWS:
            problems.append(Problem(f"more than {MAX_IMPORT_ROWS} rows: split the file"))
            break
        if len(row) != len(header):
            problems.append(
                Problem(f"row {line}: {len(row)} field(s), the header has {len(header)}")
            )
            continue
        values = dict(zip(header, (cell.strip() for cell in row), strict=True))
        requests.append(
            ManualRequest(
                employee=values["employee"],
                device=values["device"],
                at=values["at"],
                state=values.get("state") or "unknown",
                reason=values["reason"],
                row=line,
            )
        )
    if not requests and not problems:
        problems.append(Problem("the file has a header but no rows"))
    return requests, problems


def already_imported(
    outbox: Outbox, checked: Sequence[Checked]
) -> dict[int, tuple[int, StoredPunch]]:
    """Rows an earlier import stored already, by position: ``(row, the stored twin)``.

    A twin is a manual punch, not voided, of the same employee, device, local time, state and
    reason. Twins are matched one to one, so a sheet holding a row twice (stored with --force)
    still gets both rows once. The operator is no part of it: a colleague's re-run is a re-run.
    """
    since: dict[str, datetime] = {}
    for item in checked:
        punch = item.punch
        if punch is not None and punch.employee and punch.time_utc is not None:
            earliest = since.get(punch.employee, punch.time_utc)
            since[punch.employee] = min(earliest, punch.time_utc)
    twins: dict[tuple[object, ...], list[StoredPunch]] = {}
    for employee, first in since.items():
        rows = outbox.list(employee=employee, since=first, limit=_TWIN_ROWS)
        voided = {r.void_of for r in rows if r.kind == "void"}
        for row in rows:
            if row.kind == "punch" and row.source == Source.MANUAL.value and row.id not in voided:
                key = (row.employee, row.device_id, row.device_time, row.state, row.reason)
                twins.setdefault(key, []).append(row)
    found: dict[int, tuple[int, StoredPunch]] = {}
    for order, item in enumerate(checked):
        punch = item.punch
        if punch is None:
            continue
        key = (
            punch.employee,
            punch.device_id,
            punch.device_time,
            punch.state.value,
            item.request.reason.strip(),
        )
        if twins.get(key):
            found[order] = (item.request.row or 0, twins[key].pop(0))
    return found


def _read_text(file: Path) -> str:
    """The file as text, read no further than ``MAX_IMPORT_BYTES`` (not all of a wrong file)."""
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_IMPORT_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{file}: is a directory; give the CSV file itself") from None
    except OSError as exc:
        raise UsageError(
            f"{file}: cannot read it: {exc.strerror or exc}; check the path and its permissions "
            f"(ls -l {file})"
        ) from None
    if len(data) > MAX_IMPORT_BYTES:
        raise UsageError(
            f"{file}: larger than {MAX_IMPORT_BYTES // 2**20} MiB, far more than a paper sheet: "
            "check it is the right file, or split the file"
        )
    try:
        return data.decode("utf-8-sig")  # a BOM from spreadsheet exports is fine
    except UnicodeDecodeError as exc:
        # Excel's plain "CSV" is the Windows code page, its "Unicode Text" UTF-16.
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        fix = "in the spreadsheet, save it as 'CSV UTF-8 (Comma delimited)'"
        reason = not_utf8(data, start, fix, unicode_name="Excel's 'Unicode Text'")
        raise UsageError(f"{file}: {reason}") from None


def _punch(item: Checked) -> Punch:
    assert item.punch is not None  # only called once every row passed
    return item.punch


def _operator_problems(operator: str) -> list[Problem]:
    problem = operator_problem(operator)
    return [] if problem is None else [problem]


def _refuse(messages: list[str], as_json: bool, what: str = "nothing stored") -> None:
    if as_json:
        # "error" as every --json failure has it; "problems" as scripts read it before.
        error = {"type": "UsageError", "exit_code": USAGE_ERROR, "message": what}
        print_json({"ok": False, "problems": messages, "error": {**error, "problems": messages}})
    else:
        typer.echo(f"error: {what}:", err=True)
        for message in messages:
            typer.echo(f"  {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def _describe(stored: StoredPunch, tz_name: str) -> str:
    local = "?" if stored.device_time is None else f"{stored.device_time:%Y-%m-%d %H:%M:%S}"
    utc = "?" if stored.time_utc is None else f"{stored.time_utc.astimezone(UTC):%H:%M} UTC"
    return (
        f"employee {stored.employee}, device {stored.device_id}, {local} {tz_name} ({utc}), "
        f"state {stored.state}, operator {stored.operator}, reason {stored.reason!r}"
    )
