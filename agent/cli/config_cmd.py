"""``punchgate config``: check and show the configuration."""

from __future__ import annotations

import json

import typer

from agent.cli.common import ConfigOption, JsonOption, load, print_json
from agent.mqtt.diagnose import build_ssl_context
from agent.mqtt.options import MqttOptions
from config import Settings
from config.errors import BrokerError, ConfigError
from config.loader import resolve_path

app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)


@app.command("check")
def check(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Validate the config file and list every problem (exit 2 when there is one).

    Example: punchgate config check --config /etc/punchgate/punchgate.toml
    """
    try:
        settings = load(config)
        _check_tls_files(settings, str(resolve_path(config)))
    except ConfigError as exc:
        if as_json:
            raise  # the error boundary prints it as JSON with every problem
        for problem in exc.problems or [str(exc)]:
            typer.echo(problem, err=True)
        raise typer.Exit(exc.exit_code) from None
    kinds: dict[str, int] = {}
    for device in settings.devices:
        kinds[device.kind] = kinds.get(device.kind, 0) + 1
    if as_json:
        print_json(
            {
                "ok": True,
                "gateway_id": settings.agent.gateway_id,
                "devices": dict(sorted(kinds.items())),
                "brokers": list(settings.mqtt.urls),
            }
        )
        return
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no devices"
    typer.echo(
        f"OK: gateway {settings.agent.gateway_id}, {len(settings.devices)} device(s) ({summary}), "
        f"broker {', '.join(settings.mqtt.urls)}"
    )


def _check_tls_files(settings: Settings, source: str) -> None:
    """``ConfigError`` if the daemon could not load mqtt.ca_file / cert_file / key_file.

    This command is the unit's ExecStartPre and install.sh's gate: a CA file it passed and
    `run` could not load made the service exit 4 at every restart.
    """
    mqtt = settings.mqtt
    if mqtt.ca_file is None and mqtt.cert_file is None:
        return
    options = MqttOptions.from_settings(mqtt, client_id=settings.client_id)
    try:
        build_ssl_context(options)
    except BrokerError as exc:
        text = str(exc)
        key = "mqtt.cert_file"
        if text.startswith("cannot load the CA file"):
            key = "mqtt.ca_file"
        elif text.startswith("the client key") and mqtt.key_file is not None:
            key = "mqtt.key_file"
        msg = f"{source}: {key}: {text}"
        raise ConfigError(msg, [msg]) from None


@app.command("show")
def show(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective configuration (defaults filled in) with secrets masked.

    Example: punchgate config show --json
    """
    settings = load(config)
    data = settings.model_dump(mode="json")
    for device in data["devices"]:
        if device.get("comm_key"):
            device["comm_key"] = "***"
    if as_json:
        print_json(data)
        return
    _print_toml(data)


def _print_toml(data: dict[str, object]) -> None:
    for section in ("agent", "mqtt", "outbox", "manual"):
        typer.echo(f"[{section}]")
        _print_keys(data[section])  # type: ignore[arg-type]
        typer.echo("")
    for device in data["devices"]:  # type: ignore[attr-defined]
        typer.echo("[[devices]]")
        _print_keys(device)
        typer.echo("")


def _toml_value(value: object) -> str:
    # JSON scalars and arrays are TOML too; a table (the card table) is not: {"k" = "v"} in TOML.
    if isinstance(value, dict):
        pairs = (f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    return json.dumps(value, ensure_ascii=False)


def _print_keys(section: dict[str, object]) -> None:
    for key, value in section.items():
        if value is None:
            continue
        typer.echo(f"{key} = {_toml_value(value)}")
