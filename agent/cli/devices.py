"""``punchgate devices``: list, inspect, ping, pull into the outbox, and set terminal clocks."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from agent.cli.common import ConfigOption, JsonOption, load, print_json, print_table
from agent.daemon.device_state import format_duration
from agent.doctor.daemon_view import daemon_view
from agent.wiring import build_driver
from buffer import Outbox
from config.errors import UsageError
from config.settings import SerialDeviceSettings, Settings, ZkDeviceSettings
from drivers.base import DeviceInfo, Driver
from drivers.zk import ZkDriver
from drivers.zk.clock import beyond_auto_sync

app = typer.Typer(
    help="Terminals: list, inspect, ping, pull into the outbox, read or set the clock.",
    no_args_is_help=True,
)

DeviceArg = Annotated[str, typer.Argument(help="Device id from the config.", show_default=False)]
DeviceSettings = ZkDeviceSettings | SerialDeviceSettings


def _device(settings: Settings, device_id: str) -> DeviceSettings:
    device = settings.device(device_id)
    if device is None:
        known = ", ".join(d.id for d in settings.devices) or "none configured"
        raise UsageError(f"unknown device {device_id!r}; configured devices: {known}")
    return device


def _not_read_by_the_service(settings: Settings, device: DeviceSettings) -> None:
    """Refuse to open a serial line the running service reads: its waiting bytes would be lost.

    Opening a tty flushes the kernel's input queue, which every reader of the line shares, and
    a serial clock keeps no log: what the service had not read yet was gone for good.
    """
    if not isinstance(device, SerialDeviceSettings):
        return
    view = daemon_view(settings.agent.state_dir)
    if not view.running:
        return
    state = view.device_state(device.id) or "unknown"
    raise UsageError(
        f"{device.id} ({device.url}) is read by the running service (pid {view.pid}, state "
        f"{state}): opening it here would discard punches on their way to the service; see "
        "punchgate status (or stop the service first: sudo systemctl stop punchgate)"
    )


def _address(device: DeviceSettings) -> str:
    if isinstance(device, ZkDeviceSettings):
        return f"{device.host}:{device.port}/{device.transport}"
    return device.url


@contextmanager
def _opened(driver: Driver, expected_serial: str | None = None) -> Iterator[Driver]:
    if expected_serial and isinstance(driver, ZkDriver):
        driver.open(expected_serial=expected_serial)
    else:
        driver.open()
    try:
        yield driver
    finally:
        driver.close()


def _zk(driver: Driver, device: DeviceSettings, what: str) -> ZkDriver:
    if not isinstance(driver, ZkDriver):
        raise UsageError(f"device {device.id} is a {device.kind} device: it has no {what}")
    return driver


@app.command("list")
def list_devices(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the configured terminals (from the config only; nothing is contacted).

    Example: punchgate devices list --json
    """
    settings = load(config)
    rows = [
        {
            "id": d.id,
            "kind": d.kind,
            "name": d.name,
            "address": _address(d),
            "live": bool(getattr(d, "live", False)) or d.kind == "serial",
            "enabled": d.enabled,
            "timezone": d.timezone or settings.agent.timezone,
        }
        for d in settings.devices
    ]
    if as_json:
        print_json({"devices": rows})
        return
    if not rows:
        typer.echo("no devices configured: add [[devices]] entries to the config")
        return
    headers = ["id", "kind", "name", "address", "live", "enabled", "timezone"]
    print_table(headers, [[r[h] for h in headers] for r in rows])


@app.command("info")
def info(device_id: DeviceArg, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Ask a terminal who it is: serial, model, firmware, counts, capacities and clock.

    Example: punchgate devices info lobby-1
    """
    settings = load(config)
    device = _device(settings, device_id)
    _not_read_by_the_service(settings, device)
    with _opened(build_driver(settings, device)) as driver:
        details = driver.info()
    data = _info_dict(device, details)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if value is not None and value != {}:
            typer.echo(f"{key:<16} {value}")


def _info_dict(device: DeviceSettings, info: DeviceInfo) -> dict[str, Any]:
    extra = dict(info.extra)
    return {
        "device": device.id,
        "address": _address(device),
        "serial": info.serial,
        "name": info.name,
        "platform": info.platform,
        "firmware": info.firmware,
        "mac": info.mac,
        "users": _of(info.users, info.user_capacity),
        "records": _of(info.records, info.record_capacity),
        "clock": info.clock.isoformat(sep=" ") if info.clock else None,
        "drift_seconds": extra.pop("drift_seconds", None),
        "extra": {k: v for k, v in extra.items() if v is not None and k != "address"},
    }


def _of(count: int | None, capacity: int | None) -> str | None:
    if count is None:
        return None
    return f"{count}/{capacity}" if capacity else str(count)


@app.command("ping")
def ping(
    device_id: DeviceArg,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    count: Annotated[int, typer.Option(min=1, max=100, help="Round trips to time.")] = 3,
) -> None:
    """Connect, authenticate and time a few round trips (no ICMP, no root needed).

    Example: punchgate devices ping lobby-1 --count 5
    """
    settings = load(config)
    device = _device(settings, device_id)
    _not_read_by_the_service(settings, device)
    driver = build_driver(settings, device)
    started = time.perf_counter()
    with _opened(driver):
        connect_ms = (time.perf_counter() - started) * 1000
        trips: list[float] = []
        if isinstance(driver, ZkDriver):
            for _ in range(count):
                began = time.perf_counter()
                driver.clock()
                trips.append((time.perf_counter() - began) * 1000)
        serial = driver.serial if isinstance(driver, ZkDriver) else None
    data: dict[str, Any] = {
        "device": device.id,
        "address": _address(device),
        "ok": True,
        "serial": serial,
        "connect_ms": round(connect_ms, 2),
        "rtt_ms": {
            "min": round(min(trips), 3),
            "avg": round(sum(trips) / len(trips), 3),
            "max": round(max(trips), 3),
        }
        if trips
        else None,
    }
    if as_json:
        print_json(data)
        return
    line = f"{device.id} ({_address(device)}): reachable"
    line += f", serial {serial}" if serial else ""
    line += f", connect+auth {connect_ms:.1f} ms"
    if trips:
        rtt = data["rtt_ms"]
        line += f", round trip min/avg/max {rtt['min']}/{rtt['avg']}/{rtt['max']} ms"
    typer.echo(line)


@app.command("pull")
def pull(
    device_id: DeviceArg,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    full: Annotated[
        bool, typer.Option("--full", help="Read the whole log, not only what is new.")
    ] = False,
    accept_serial: Annotated[
        str | None,
        typer.Option(
            "--accept-serial",
            help="Accept a swapped terminal reporting this serial number from now on.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Read new punches from a terminal into the outbox now (what the daemon does each poll).

    Only the tail of the log is read when the last stored watermark still matches. A terminal
    reporting another serial than before is refused unless --accept-serial names it.

    Example: punchgate devices pull lobby-1
    """
    settings = load(config)
    device = _device(settings, device_id)
    if isinstance(device, SerialDeviceSettings):
        raise UsageError(
            f"device {device.id} is a serial device: it keeps no log to pull; its punches are "
            "stored as they arrive while the service reads the line (punchgate status)"
        )
    agent = settings.agent
    with Outbox.open(
        agent.outbox_path,
        agent.gateway_id,
        disk_reserve_bytes=int(settings.outbox.disk_reserve_mb * 2**20),
    ) as outbox:
        expected = accept_serial or outbox.device_serial(device.id)
        watermark = None if full else outbox.watermark(device.id)
        driver = build_driver(settings, device)
        with _opened(driver, expected) as opened, _Bar(enabled=not as_json) as bar:
            started = time.perf_counter()
            if isinstance(opened, ZkDriver):
                punches, mark = opened.read_new(watermark, progress=bar)
            else:
                punches, mark = opened.read_new(watermark)
            seconds = time.perf_counter() - started
            serial = opened.serial if isinstance(opened, ZkDriver) else None
            stored = outbox.add_punches(
                punches, device_id=device.id, watermark=mark, device_serial=serial
            )
            cleared = False
            if isinstance(opened, ZkDriver) and isinstance(mark.get("count"), int):
                # The batch and its watermark are committed above: clearing is now allowed.
                cleared = opened.clear_log_if_due(int(mark["count"]))  # type: ignore[call-overload]
            summary = opened.last_read if isinstance(opened, ZkDriver) else None
    data = {
        "device": device.id,
        "serial": serial,
        "read": len(punches),
        "stored": stored.inserted,
        "duplicates": stored.duplicates,
        "full_read": summary.full if summary else None,
        "reason": summary.reason if summary else None,
        "records_on_terminal": summary.records if summary else None,
        "capacity": summary.capacity if summary else None,
        "suspect": sum(1 for p in punches if p.suspect),
        "cleared": cleared,
        "seconds": round(seconds, 3),
    }
    if as_json:
        print_json(data)
        return
    how = f"full read: {summary.reason}" if summary and summary.full else "tail read"
    typer.echo(
        f"{device.id}: read {data['read']} punch(es) in {seconds:.2f}s ({how}); stored "
        f"{data['stored']} new, {data['duplicates']} already stored"
        + (f"; {data['suspect']} flagged suspect" if data["suspect"] else "")
        + (f"; log {summary.records}/{summary.capacity}" if summary else "")
        + ("; terminal log cleared" if cleared else "")
    )


class _Bar:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = typer.progressbar(length=total, label="reading", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@app.command("time")
def clock(
    device_id: DeviceArg,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    set_: Annotated[
        bool, typer.Option("--set", help="Set the terminal clock to the gateway's time.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="With --set: also correct by more than an hour."),
    ] = False,
) -> None:
    """Show the terminal clock and its drift from the gateway; --set corrects it.

    Times are the device's local wall-clock time (its configured timezone). A correction of
    more than an hour needs --force: one of the two clocks is wrong then, often the gateway's.

    Example: punchgate devices time lobby-1 --set
    """
    settings = load(config)
    device = _device(settings, device_id)
    if isinstance(device, SerialDeviceSettings):  # before opening: an unplugged port is moot
        raise UsageError(f"device {device.id} is a serial device: it has no clock")
    with _opened(build_driver(settings, device)) as opened:
        driver = _zk(opened, device, "clock")
        before = driver.clock()
        if set_ and not force:
            _check_correction(device.id, before.drift_seconds, device.max_drift)
        after = driver.set_time() if set_ else None
    data: dict[str, Any] = {"device": device.id, **before.to_dict()}
    if after is not None:
        data["set"] = True
        data["after"] = after.to_dict()
    if as_json:
        print_json(data)
        return
    typer.echo(f"terminal  {before.device_time or 'impossible date (clock unreadable)'}")
    typer.echo(f"gateway   {before.gateway_time}")
    typer.echo(f"drift     {_drift(before.drift_seconds)}")
    if after is not None:
        typer.echo(f"set; now  {after.device_time} (drift {_drift(after.drift_seconds)})")


def _check_correction(device_id: str, drift: float | None, max_drift: float) -> None:
    """Refuse a --set that would move the terminal by more than clock_sync would on its own."""
    if drift is None or not beyond_auto_sync(drift, max_drift):
        return
    raise UsageError(
        f"{device_id} is {format_duration(abs(drift))} "
        f"{'ahead of' if drift > 0 else 'behind'} the gateway, more than an hour: check the "
        "gateway clock first (timedatectl: 'System clock synchronized: yes'; a gateway without "
        "RTC boots with the time it was shut down), then the terminal's; if the gateway is "
        f"right, run again with --force: punchgate devices time {device_id} --set --force"
    )


def _drift(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    ahead = "ahead" if seconds > 0 else "behind" if seconds < 0 else "in sync"
    return f"{seconds:+.0f}s ({ahead})"
