"""``punchgate run``: the daemon in the foreground, as systemd (or a person) starts it."""

from __future__ import annotations

import sys

import typer

from agent import logs
from agent.cli.common import ConfigOption, load
from config.loader import resolve_path


def run(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Run the agent: read terminals, keep punches in the outbox, deliver them over MQTT.

    Logs go to stdout (JSON lines when stdout is not a terminal, as under journald).
    SIGTERM/Ctrl-C stop it in order within [agent].shutdown_timeout; SIGHUP reloads the config.

    Example: punchgate run --config /etc/punchgate/punchgate.toml
    """
    from agent.daemon.supervisor import Supervisor  # the daemon's imports only for this command

    root = ctx.parent.params if ctx.parent is not None else {}
    level = "debug" if root.get("debug") else str(root.get("log_level") or "info").lower()
    logs.configure(level, stream=sys.stdout)
    path = resolve_path(config)
    settings = load(path)
    code = Supervisor(settings, config_path=path).run()
    if code:
        raise typer.Exit(code)
