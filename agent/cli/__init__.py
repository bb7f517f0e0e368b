"""The ``punchgate`` command: one typer app and the one error boundary."""

from __future__ import annotations

import sys

# Loading takes seconds on a small gateway: a Ctrl-C meanwhile ends with one line, as later on.
try:
    import json
    from pathlib import Path
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
    from config.errors import EXIT_CODES, PunchgateError, UsageError
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    raise SystemExit(130) from None


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
    """Entry point: every error becomes one line and an exit code; tracebacks need --debug.

    Unforeseen errors (not a ``PunchgateError``) exit 1 with their file and "report it".

    With ``--json`` the error is also printed on stdout as one JSON document, so a script piping
    the output into a JSON parser gets the facts instead of an empty stream.
    """
    argv = sys.argv[1:]
    debug = "--debug" in argv
    try:
        app()
    except PunchgateError as exc:
        if debug:
            raise
        message = str(exc)
        problems = [str(p) for p in getattr(exc, "problems", []) if str(p) != message]
        if isinstance(exc.__cause__ or exc.__context__, PermissionError) and "sudo" not in message:
            message += f"; run as root or as the service user: {SUDO} ..."
        if "--json" in argv:
            _print_error_json(type(exc).__name__, exc.exit_code, message, problems)
        typer.echo(f"error: {message}", err=True)
        for problem in problems[:50]:
            typer.echo(f"  {problem}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted("--json" in argv)
    except SystemExit as exc:
        # typer turns Ctrl-C inside a command into a silent exit 130: say what happened.
        if exc.code == INTERRUPTED and _caused_by_ctrl_c(exc):
            _interrupted("--json" in argv)
        bad_usage = exc.__context__  # typer's own (vendored) click: its usage errors
        if "--json" in argv and isinstance(bad_usage, typer.TyperException):
            message = getattr(bad_usage, "format_message", bad_usage.__str__)()
            code = exc.code if isinstance(exc.code, int) else UsageError.exit_code
            _print_error_json("UsageError", code, message, [])
        raise
    except Exception as exc:  # the last boundary: a technician reads one line, not a traceback
        if debug:
            raise
        message = _unexpected(exc, argv)
        if "--json" in argv:
            _print_error_json("UnexpectedError", 1, message, [])
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)


INTERRUPTED = 130


def _unexpected(exc: Exception, argv: list[str]) -> str:
    """One line for an error no raise site foresaw: what failed, on which file, what to do."""
    action = "run again with --debug and report the output"
    if isinstance(exc, OSError) and exc.strerror:
        files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        what = f"{' -> '.join(files)}: {exc.strerror}" if files else exc.strerror
        action = f"check the paths in {_config_used(argv)}, then {action}"
    else:
        what = str(exc)
    what = logs.visible(what)
    if len(what) > 300:
        what = what[:297] + "..."
    return f"unexpected {type(exc).__name__}: {what or '(no details)'}; {action}"


def _config_used(argv: list[str]) -> str:
    """The config file this command read (--config, -c, $PUNCHGATE_CONFIG or the default)."""
    from config.loader import resolve_path

    given: str | None = None
    for index, arg in enumerate(argv):
        if arg in ("--config", "-c") and index + 1 < len(argv):
            given = argv[index + 1]
        elif arg.startswith("--config="):
            given = arg.partition("=")[2]
    return str(resolve_path(None if given is None else Path(given)))


SUDO = "sudo /opt/punchgate/bin/punchgate"


def _interrupted(as_json: bool) -> None:
    if as_json:
        _print_error_json("Interrupted", INTERRUPTED, "interrupted (Ctrl-C)", [])
    typer.echo("interrupted", err=True)
    sys.exit(INTERRUPTED)


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # SystemExit <- typer.Exit <- KeyboardInterrupt; bounded walk
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _print_error_json(kind: str, code: int, message: str, problems: list[str]) -> None:
    error = {"type": kind, "exit_code": code, "message": message, "problems": problems}
    sys.stdout.write(json.dumps({"ok": False, "error": error}, ensure_ascii=False) + "\n")
    sys.stdout.flush()
