"""Pieces every CLI command shares: the --config and --json options, loading, printing."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.logs import visible
from config import Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file. Default: $PUNCHGATE_CONFIG, else /etc/punchgate/punchgate.toml.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def load(config: Path | None) -> Settings:
    """Load settings or raise ``ConfigError`` (the error boundary prints it)."""
    return load_settings(config)


def print_json(data: Any) -> None:
    """One JSON document on stdout; datetimes and paths as strings."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table (readable over SSH, no colour codes when piped).

    Control characters are shown escaped: cells quote what terminals and the network reported
    (an employee id, a device's last error), and an escape sequence in one was obeyed by the
    technician's terminal (OSC 52 rewrites the clipboard).
    """
    cells = [[("" if v is None else visible(str(v))) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Inside, Ctrl-C and SIGTERM set ``stop`` instead of raising; enter before the banner.

    A KeyboardInterrupt can land anywhere, also before the caller's loop and its cleanup (on a
    busy machine, right after the banner that says "Ctrl-C to stop"), ending the command with
    exit code 130 and its work unsaved. A second Ctrl-C interrupts the shutdown itself. The
    previous handlers are back afterwards. Outside the main thread (where Python allows no
    handlers) it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first_interrupt(*_: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, first_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
