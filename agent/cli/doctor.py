"""``punchgate doctor``: every check with a verdict and the next step; exit 6 when one fails."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agent.cli.common import ConfigOption, JsonOption, print_json, print_table
from agent.doctor import FAMILIES, DoctorReport, run_doctor
from agent.doctor.result import CheckResult, Job, Verdict
from agent.logs import visible
from agent.wiring import build_driver
from config.errors import EXIT_CODES, UsageError

app = typer.Typer()

DOCTOR_FAILED = 6
assert DOCTOR_FAILED in EXIT_CODES  # the code is documented in config/errors.py
_MARK = {Verdict.OK: "ok", Verdict.WARN: "WARN", Verdict.FAIL: "FAIL", Verdict.SKIP: "skip"}


@app.command("doctor")
def doctor(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help=f"Run only this family of checks (repeatable): {', '.join(FAMILIES)}.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device", "-d", help="Check only this terminal (repeatable).", show_default=False
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=120,
            help="Seconds each network step may take at most (never longer than the service "
            "waits: a terminal's timeout, mqtt.connect_timeout).",
        ),
    ] = 5.0,
) -> None:
    """Check config, outbox, broker, terminals and service; print what to do about each problem.

    Every check has its own timeout, so a dead terminal or broker costs seconds. Terminals are
    checked concurrently. Exit code 0 when nothing failed (warnings allowed), 6 when a check
    failed, 2 for bad arguments.

    Example: punchgate doctor --only broker --only devices --config /etc/punchgate/punchgate.toml
    """
    families = [f.lower() for f in only or []]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise UsageError(f"--only {', '.join(unknown)}: use one of {', '.join(FAMILIES)}")
    progress = _progress if (not as_json and sys.stderr.isatty()) else None
    report = run_doctor(
        config,
        build=build_driver,
        only=families,
        devices=device or [],
        timeout=timeout,
        on_done=progress,
    )
    if as_json:
        print_json(
            {
                "ok": not report.failed,
                "summary": report.counts(),
                "checks": [r.as_dict() for r in report.results],
            }
        )
    else:
        _print_report(report)
    if report.failed:
        raise typer.Exit(DOCTOR_FAILED)


def _progress(job: Job, results: list[CheckResult]) -> None:
    worst = "FAIL" if any(r.verdict == Verdict.FAIL for r in results) else "done"
    typer.echo(f"  checked {job.family} {job.target}: {worst}", err=True)


def _print_report(report: DoctorReport) -> None:
    # Steps skipped because an earlier one failed add nothing on screen (--json keeps them).
    shown = [
        r
        for r in report.results
        if not (r.verdict == Verdict.SKIP and r.detail.startswith("not run:") and r.target)
    ]
    rows = [
        [_MARK[r.verdict], r.family, visible(r.target or "-"), r.name, visible(r.detail)]
        for r in shown
    ]
    print_table(["", "family", "target", "check", "detail"], rows)
    todo = [r for r in report.results if r.verdict in (Verdict.FAIL, Verdict.WARN) and r.next_step]
    if todo:
        typer.echo("\nNext steps:")
        for number, result in enumerate(todo, 1):
            where = f"{result.family} {result.target}".strip()
            typer.echo(f"  {number}. {_MARK[result.verdict]} {visible(where)}, {result.name}:")
            typer.echo(f"     {visible(result.next_step)}")
    counts = report.counts()
    typer.echo(
        f"\n{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed, "
        f"{counts['skip']} skipped"
    )
