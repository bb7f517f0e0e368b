"""``punchgate status``: the running daemon's live state, else what the outbox says."""

from __future__ import annotations

from typing import Any

import typer

from agent.cli.common import ConfigOption, JsonOption, load, print_json, print_table
from agent.cli.outbox_access import explained_permissions
from agent.daemon.device_state import format_duration
from agent.daemon.status_file import read_status, status_path
from agent.doctor.terminal_checks import FILL_FAIL
from buffer.outbox import Outbox
from config.errors import UsageError
from config.settings import Settings


def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show devices, backlog, oldest pending punch, broker state and recent errors.

    While the daemon runs this is its live status (refreshed every [agent].status_interval);
    when it does not, the outbox's own view is shown and the output says so.

    Example: punchgate status --json
    """
    settings = load(config)
    try:
        live = read_status(settings.agent.state_dir)
    except PermissionError as exc:
        raise UsageError(
            f"cannot read the live status {exc.filename}: permission denied; run as root or as "
            "the service user: sudo -u punchgate /opt/punchgate/bin/punchgate status"
        ) from None
    if live is not None and live["running"]:
        if as_json:
            print_json({"source": "daemon", **live})
        else:
            _print_live(live, settings)
        return
    reason = _why_not_running(settings, live)
    view = _outbox_view(settings)
    if as_json:
        print_json({"source": "outbox", "running": False, "reason": reason, **view})
        return
    typer.echo(f"punchgate is not running ({reason}); showing the outbox's view")
    _print_outbox(view)


def _why_not_running(settings: Settings, live: dict[str, Any] | None) -> str:
    if live is None:
        return f"no live status in {status_path(settings.agent.state_dir)}"
    if live.get("state") == "stopped":
        return f"stopped cleanly at {live.get('updated_at')}"
    if not live["pid_alive"]:
        return f"pid {live.get('pid')} is gone; last status at {live.get('updated_at')}"
    return f"the live status is stale ({live.get('age_s')}s old): the daemon may be hung"


def _outbox_view(settings: Settings) -> dict[str, Any]:
    path = settings.agent.outbox_path
    with explained_permissions(path):
        if not path.exists():
            return {
                "outbox": None,
                "message": f"no outbox at {path} yet: the daemon never ran here",
            }
        # recover=False: a status command must never move files; a damaged outbox is reported.
        with Outbox.open(path, settings.agent.gateway_id, recover=False) as box:
            return {"outbox": box.stats().as_dict()}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_duration(seconds)


def _print_live(live: dict[str, Any], settings: Settings) -> None:
    health = "healthy" if live.get("healthy") else "UNHEALTHY: " + ", ".join(live["unhealthy"])
    typer.echo(
        f"punchgate is running (pid {live['pid']}, boot {live.get('boot')}, since "
        f"{live.get('started_at')}; live status {live.get('age_s')}s old), {health}"
    )
    typer.echo(f"gateway  {live.get('gateway_id')} ({live.get('site') or 'no site'})")
    broker = live.get("broker") or {}
    state = "connected" if broker.get("connected") else "DISCONNECTED"
    if not broker.get("connected") and broker.get("reconnect_attempts"):
        state += f" (retrying: attempt {broker['reconnect_attempts']})"
    typer.echo(
        f"broker   {state} {broker.get('broker_url') or ''}  delivered {broker.get('delivered', 0)}"
        f", in flight {broker.get('in_flight', 0)}"
        + (f", last error: {broker['last_error']}" if broker.get("last_error") else "")
    )
    disk_low = bool((live.get("outbox") or {}).get("disk_alarm"))
    typer.echo(
        f"outbox   backlog {live.get('backlog')}, oldest pending "
        f"{_age(live.get('oldest_pending_age_s'))}"
        + (", DISK LOW: free space on the state directory now" if disk_low else "")
    )
    devices = live.get("devices") or []
    if devices:
        typer.echo("")
        rows = [
            [
                d["device_id"],
                d["kind"],
                d["state"],
                d.get("last_seen") or "never",
                "-" if d.get("drift_s") is None else f"{d['drift_s']:+.0f}s",
                _records(d),
                d.get("last_error") or _concern(d, settings),
            ]
            for d in devices
        ]
        print_table(["DEVICE", "KIND", "STATE", "LAST SEEN", "DRIFT", "RECORDS", "ERROR"], rows)
    errors = live.get("last_errors") or []
    if errors:
        typer.echo("\nrecent errors:")
        for entry in errors[-10:]:
            count = entry.get("count")
            many = isinstance(count, int) and count > 1
            times = f" ({count} times, the last at this time)" if many else ""
            typer.echo(f"  {entry['time']}  {entry['source']}: {entry['error']}{times}")


def _concern(device: dict[str, Any], settings: Settings) -> str:
    """Why a terminal that answers still needs a person, from the figures the status holds.

    Its row said only "+94608000s" for a clock three years off and "990/1000" for a log about
    to stop recording, with an empty ERROR column: nothing named it as the bad one.
    """
    notes = []
    drift = device.get("drift_s")
    max_drift = getattr(settings.device(device["device_id"]), "max_drift", None)
    if isinstance(drift, int | float) and isinstance(max_drift, int | float):
        if abs(drift) > max_drift:
            notes.append(
                f"clock {format_duration(abs(drift))} {'ahead' if drift > 0 else 'behind'} "
                f"(more than max_drift {max_drift:g}s): punch times are wrong"
            )
    records, capacity = device.get("records"), device.get("record_capacity")
    if isinstance(records, int) and isinstance(capacity, int) and capacity > 0:
        if records >= FILL_FAIL * capacity:
            notes.append(f"log {records / capacity:.0%} full: the terminal stops recording soon")
    return "; ".join(notes) + "; see punchgate doctor" if notes else ""


def _records(device: dict[str, Any]) -> str:
    if device.get("records") is None:
        return "-"
    capacity = device.get("record_capacity")
    return f"{device['records']}/{capacity}" if capacity else str(device["records"])


def _print_outbox(view: dict[str, Any]) -> None:
    stats = view.get("outbox")
    if stats is None:
        typer.echo(view["message"])
        return
    typer.echo(
        f"outbox   {stats['path']}: backlog {stats['pending']}, oldest pending "
        f"{_age(stats['oldest_pending_age_s'])}, delivered {stats['delivered']}, "
        f"last seq {stats['last_seq']}" + (", DISK LOW" if stats.get("disk_alarm") else "")
    )
    devices = stats.get("devices") or []
    if devices:
        typer.echo("")
        rows = [
            [d["device_id"], d.get("serial") or "", d.get("last_punch_utc") or "", d["last_seq"]]
            for d in devices
        ]
        print_table(["DEVICE", "SERIAL", "LAST PUNCH (UTC)", "LAST SEQ"], rows)
