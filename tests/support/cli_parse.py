"""Parse a documented ``punchgate`` command line strictly, without running it."""

from __future__ import annotations

from typing import Any

import typer

from agent.cli import app


def parse_strictly(args: list[str], line: str) -> None:
    """Resolve ``args`` to a leaf command and parse its options and values.

    Unknown commands or options, bad values and missing required options raise; ``line`` names
    the example in the failure.
    """
    command: Any = typer.main.get_command(app)
    context = command.make_context("punchgate", [], resilient_parsing=True)
    while hasattr(command, "commands") and args and args[0] in command.commands:
        name, args = args[0], args[1:]
        command = command.commands[name]
        context = command.make_context(name, list(args), parent=context, resilient_parsing=True)
    assert not hasattr(command, "commands"), f"{line!r} does not name a leaf command"
    command.make_context(context.info_name, list(args), parent=context.parent)
