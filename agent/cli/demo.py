"""``punchgate demo``: the whole path on this machine in one command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agent import logs


def demo(
    ctx: typer.Context,
    seconds: Annotated[
        float | None,
        typer.Option(
            help="Stop by itself after this many seconds (default: run until Ctrl-C).", min=1
        ),
    ] = None,
    punch_every: Annotated[
        float, typer.Option(help="Seconds between punches on the simulated terminal.", min=0.1)
    ] = 3.0,
) -> None:
    """Run a simulated terminal, a local broker, the agent and a subscriber; show punches arriving.

    Needs Mosquitto installed (bash scripts/setup.sh does it). Everything runs on 127.0.0.1 in a
    temporary directory that is removed when the demo stops (Ctrl-C or --seconds).

    Example: punchgate demo --seconds 60
    """
    from agent.demo import Demo  # imports the simulator only for this command

    root = ctx.parent.params if ctx.parent is not None else {}
    if not root.get("debug") and str(root.get("log_level") or "info").lower() == "info":
        logs.configure("warning", stream=sys.stderr)  # the demo's own output is the show
    Demo(seconds=seconds, punch_every=punch_every, echo=typer.echo).run()
