"""The ``punchgate`` command: one typer app and the one error boundary."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agent import __version__, logs
from agent.cli import (
    config_cmd,
    devices,
    doctor,
    outbox_cmd,
    outbox_inspect,  # noqa: F401  (adds list/show/export/redeliver to outbox)
    punch,
    receive,
    simulate,
)
from agent.cli import demo as demo_cmd
from agent.cli import run as run_cmd
from agent.cli import status as status_cmd
from config.errors import EXIT_CODES, PunchgateError

app = typer.Typer(
    help="punchgate: biometric time clocks -> durable outbox -> MQTT.\n\n"
    "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(simulate.app, name="simulate")
app.command("run")(run_cmd.run)
app.command("status")(status_cmd.status)
app.command("demo")(demo_cmd.demo)
app.add_typer(devices.app, name="devices")
app.add_typer(outbox_cmd.app, name="outbox")
app.add_typer(doctor.app)  # nameless: merges the single `doctor` command into the root
app.add_typer(punch.app, name="punch")
app.command("receive")(receive.receive)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"punchgate {__version__}")
        raise typer.Exit()


# Services log what they do; one-shot commands print their answer and log only what went wrong.
_SERVICE_COMMANDS = {"run", "demo", "simulate", "receive"}


@app.callback()
def root(
    ctx: typer.Context,
    log_level: Annotated[
        str | None,
        typer.Option(
            help="Log level: debug, info, warning, error. "
            "Default: info for run/demo/simulate/receive, warning for the other commands.",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Biometric time-clock gateway agent."""
    default = "info" if ctx.invoked_subcommand in _SERVICE_COMMANDS else "warning"
    level = "debug" if debug else (log_level or default).lower()
    if level not in logs.LEVELS:
        raise typer.BadParameter(
            f"must be one of {', '.join(logs.LEVELS)}", param_hint="--log-level"
        )
    # CLI commands log to stderr so --json output on stdout stays clean; `run` re-targets stdout.
    logs.configure(level, stream=sys.stderr)


def main() -> None:
    """Entry point: expected errors become one line and an exit code; tracebacks need --debug."""
    debug = "--debug" in sys.argv[1:]
    try:
        app()
    except PunchgateError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        for problem in getattr(exc, "problems", [])[:50]:
            typer.echo(f"  {problem}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
