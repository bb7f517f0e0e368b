"""Doctor checks on each terminal: reachable, comm key, same serial as before, clock, log fill.

One job per device, run concurrently (bounded) by the runner; every call to the terminal is
bounded by the device's timeout capped to the doctor's, so a dead terminal costs seconds.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from agent.doctor.daemon_view import DaemonView
from agent.doctor.result import CheckResult, Job, fail, ok, skip, warn
from config import Settings
from config.errors import (
    ConfigError,
    DeviceAuthError,
    DeviceError,
    DeviceIdentityError,
    DeviceUnavailable,
    ProtocolError,
)
from config.settings import SerialDeviceSettings, ZkDeviceSettings
from drivers.base import DeviceInfo, Driver
from drivers.timeutil import gateway_clock_problem
from drivers.zk.clock import beyond_auto_sync

FAMILY = "devices"
FILL_WARN = 0.8  # log fill that deserves a look
FILL_FAIL = 0.95  # the terminal is about to stop recording (or overwrite its oldest punches)
DeviceConfig = ZkDeviceSettings | SerialDeviceSettings
DriverFactory = Callable[[Settings, DeviceConfig], Driver]
_NAMES = ("reachable", "comm key", "serial number", "clock", "log fill")


def device_jobs(
    settings: Settings,
    *,
    timeout: float,
    build: DriverFactory,
    known_serials: dict[str, str | None],
    daemon: DaemonView,
    only: set[str] | None = None,
) -> list[Job]:
    """One job per configured device (or per device named in ``only``)."""
    jobs = []
    for device in settings.devices:
        if only and device.id not in only:
            continue
        capped = device.model_copy(update={"timeout": min(device.timeout, timeout)})
        # A host name's lookup, a connect, a few requests and a close, each bounded by the
        # capped timeout.
        budget = capped.timeout * 5 + 1.0

        def run(capped: DeviceConfig = capped) -> list[CheckResult]:
            return check_device(
                settings,
                capped,
                build,
                known_serials.get(capped.id),
                daemon.device_state(capped.id),
            )

        jobs.append(
            Job(
                FAMILY,
                device.id,
                "reachable",
                budget,
                run,
                next_step_on_timeout=_unreachable_step(device),
            )
        )
    return jobs


def check_device(
    settings: Settings,
    device: DeviceConfig,
    build: DriverFactory,
    known_serial: str | None,
    daemon_state: str | None,
) -> list[CheckResult]:
    """Every check for one device, stopping where the terminal stops answering."""
    target = device.id
    if not device.enabled:
        return [skip(FAMILY, target, "reachable", "disabled in the config (enabled = false)")]
    if isinstance(device, SerialDeviceSettings):
        return _serial_device(settings, device, build, daemon_state)
    where = f"{device.host}:{device.port}/{device.transport}"
    seen_by_daemon = f"; the running daemon sees it {daemon_state}" if daemon_state else ""
    try:
        driver = build(settings, device)
    except DeviceError as exc:
        return [fail(FAMILY, target, "reachable", str(exc), "fix the device section in the config")]
    try:
        driver.open()
    except DeviceAuthError as exc:
        return [
            ok(FAMILY, target, "reachable", f"{where} answers"),
            fail(
                FAMILY,
                target,
                "comm key",
                str(exc),
                f"set comm_key for {target} to the terminal's communication password "
                "(terminal menu: Comm. > Security > Comm Key), then restart the service",
            ),
            *_skipped(target, _NAMES[2:], "comm key"),
        ]
    except ProtocolError as exc:
        return [
            fail(
                FAMILY,
                target,
                "reachable",
                f"{where} answered, but not like a ZK terminal: {exc}",
                "check the port and transport (tcp for current firmware, udp for old)",
            ),
            *_skipped(target, _NAMES[1:], "reachable"),
        ]
    except DeviceUnavailable as exc:
        if daemon_state == "online":
            return [
                warn(
                    FAMILY,
                    target,
                    "reachable",
                    f"no session for the doctor ({exc}), but the running daemon sees it online: "
                    "the terminal allows one session at a time",
                    "to check it fully, stop the service for a minute: sudo systemctl stop "
                    "punchgate; punchgate doctor --only devices; sudo systemctl start punchgate",
                ),
                *_skipped(target, _NAMES[1:], "reachable"),
            ]
        step = _unreachable_step(device)
        if isinstance(exc.__cause__, socket.gaierror):
            step = (
                f"check host of {target} in the config and the gateway's DNS "
                f"(getent hosts {device.host})"
            )
        elif _refused(exc):
            step = _refused_step(device)
        elif _dropped(exc):
            step = (
                f"{device.host}:{device.port} accepted the connection and dropped it: another "
                "program may hold the terminal's only session (vendor software; the service: "
                "punchgate status), it may be rebooting, or port "
                f"{device.port} is not the terminal's (menu: Comm. > Ethernet)"
            )
        return [
            fail(FAMILY, target, "reachable", f"{exc}{seen_by_daemon}", step),
            *_skipped(target, _NAMES[1:], "reachable"),
        ]
    except DeviceIdentityError as exc:
        return [
            ok(FAMILY, target, "reachable", f"{where} answers"),
            ok(FAMILY, target, "comm key", "accepted"),
            fail(FAMILY, target, "serial number", str(exc), _swapped_step(target)),
            *_skipped(target, _NAMES[3:], "serial number"),
        ]
    try:
        info = driver.info()
    except DeviceError as exc:
        return [
            ok(FAMILY, target, "reachable", f"{where} answers"),
            ok(FAMILY, target, "comm key", _key_detail(device)),
            fail(
                FAMILY,
                target,
                "serial number",
                f"the terminal did not say who it is: {exc}",
                _unreachable_step(device),
            ),
            *_skipped(target, _NAMES[3:], "serial number"),
        ]
    finally:
        driver.close()
    return [
        ok(FAMILY, target, "reachable", f"{where} answers{seen_by_daemon}"),
        ok(FAMILY, target, "comm key", _key_detail(device)),
        _serial(target, info, known_serial),
        _clock(settings, device, info),
        _fill(device, info),
    ]


def _serial_device(
    settings: Settings, device: SerialDeviceSettings, build: DriverFactory, daemon_state: str | None
) -> list[CheckResult]:
    target = device.id
    not_applicable = [
        skip(FAMILY, target, name, "not applicable to serial clocks") for name in _NAMES[1:]
    ]
    if daemon_state is not None:
        # The daemon holds the port exclusively; its view is the only one there is.
        if daemon_state == "online":
            detail = f"{device.url}: the running daemon reads it (online)"
            return [ok(FAMILY, target, "reachable", detail), *not_applicable]
        return [
            fail(
                FAMILY,
                target,
                "reachable",
                f"{device.url}: the running daemon reports it {daemon_state}",
                "see 'punchgate status' for its last error; check the cable and the adapter",
            ),
            *not_applicable,
        ]
    try:
        driver = build(settings, device)
        driver.open()
    except DeviceError as exc:
        return [fail(FAMILY, target, "reachable", str(exc), _unreachable_step(device))]
    except ConfigError as exc:
        # The card roster is read on open: a missing or bad file is the config's problem.
        return [
            fail(
                FAMILY,
                target,
                "card roster",
                "; ".join(exc.problems or [str(exc)]),
                f"fix roster_file of {target} or the file (card,employee per line); the "
                "service retries on its own, and the cards read until then are lost",
            ),
            skip(FAMILY, target, "reachable", "not run: card roster failed"),
        ]
    driver.close()
    return [ok(FAMILY, target, "reachable", f"{device.url} opens"), *not_applicable]


def _serial(target: str, info: DeviceInfo, known: str | None) -> CheckResult:
    name = "serial number"
    if known is None:
        return ok(FAMILY, target, name, f"{info.serial} (first contact: nothing stored to compare)")
    if known and info.serial != known:
        return fail(
            FAMILY,
            target,
            name,
            f"the terminal reports serial {info.serial}, but {known} was last seen for {target}",
            _swapped_step(target, info.serial),
        )
    return ok(FAMILY, target, name, f"{info.serial}, same as last seen")


def _clock(settings: Settings, device: ZkDeviceSettings, info: DeviceInfo) -> CheckResult:
    name = "clock"
    if info.clock is None:
        # A ZK terminal always answers GET_TIME; no clock means it decoded to no real date.
        return fail(
            FAMILY,
            device.id,
            name,
            "the terminal's clock holds an impossible date: its punches get one too",
            f"set it: punchgate devices time {device.id} --set; if it is wrong again after a "
            "power cut, the terminal's clock battery is dead",
        )
    tz = settings.device_timezone(device)
    now = datetime.now(tz).replace(tzinfo=None)
    drift = (info.clock - now).total_seconds()
    detail = f"terminal {info.clock:%Y-%m-%d %H:%M:%S}, {tz.key} {now:%H:%M:%S}: "
    detail += f"{abs(drift):.0f}s {'ahead' if drift > 0 else 'behind'}"
    if abs(drift) <= device.max_drift:
        return ok(FAMILY, device.id, name, detail + f" (limit {device.max_drift:g}s)")
    if device.clock_sync:
        # The service sets it only from a plausible gateway clock, by at most an hour or so.
        refusal = gateway_clock_problem(datetime.now(UTC))
        if refusal is None and beyond_auto_sync(drift, device.max_drift):
            refusal = (
                "more than clock_sync corrects on its own: check the gateway clock first "
                f"(timedatectl: NTP synchronized?), then: punchgate devices time {device.id} "
                "--set --force"
            )
        return warn(
            FAMILY,
            device.id,
            name,
            detail + f", more than max_drift {device.max_drift:g}s",
            refusal
            or "clock_sync is on: the service sets the clock at its next poll (check again after)",
        )
    step = f"set it now: punchgate devices time {device.id} --set (or clock_sync = true)"
    if beyond_auto_sync(drift, device.max_drift):
        # --set without --force refuses this, and so would clock_sync: the gateway first.
        step = (
            "more than an hour off: check the gateway clock first (timedatectl: NTP "
            f"synchronized?), then: punchgate devices time {device.id} --set --force"
        )
    hours = abs(drift) / 3600
    if hours >= 0.9 and abs(hours - round(hours)) * 3600 <= device.max_drift:
        step = (
            f"the drift is a whole number of hours: check the terminal's timezone setting and "
            f"timezone for {device.id} in the config ({tz.key}); then " + step
        )
    return fail(
        FAMILY,
        device.id,
        name,
        detail + f", more than max_drift {device.max_drift:g}s: punch times are wrong",
        step,
    )


def _fill(device: ZkDeviceSettings, info: DeviceInfo) -> CheckResult:
    name = "log fill"
    if info.records is None or not info.record_capacity:
        return skip(FAMILY, device.id, name, "the terminal did not report its record capacity")
    fill = info.records / info.record_capacity
    detail = f"{info.records} of {info.record_capacity} records ({fill:.0%})"
    if device.clear_after_read:
        plan = f"clear_after_read is on: the service clears it above {device.clear_threshold:.0%}"
    else:
        plan = (
            "once every punch is delivered, clear the log on the terminal, or set "
            "clear_after_read = true"
        )
    if fill >= FILL_FAIL:
        return fail(FAMILY, device.id, name, detail + ": nearly full", plan)
    if fill >= FILL_WARN:
        return warn(FAMILY, device.id, name, detail, plan)
    return ok(FAMILY, device.id, name, detail)


def _key_detail(device: ZkDeviceSettings) -> str:
    return "accepted" if device.comm_key else "none set, none required"


def _skipped(target: str, names: tuple[str, ...], failed: str) -> list[CheckResult]:
    return [skip(FAMILY, target, n, f"not run: {failed} failed") for n in names]


def _unreachable_step(device: DeviceConfig) -> str:
    if isinstance(device, SerialDeviceSettings):
        return f"check the cable, the adapter and the url ({device.url}) of {device.id}"
    return (
        f"check the terminal's power and network cable, then: ping {device.host}; compare its "
        f"IP (terminal menu: Comm. > Ethernet) with host/port of {device.id} in the config"
    )


def _refused(exc: DeviceUnavailable) -> bool:
    # A refusal is an answer: the address is up, so power and cabling are not the problem.
    return isinstance(exc.__cause__, ConnectionRefusedError)


def _dropped(exc: DeviceUnavailable) -> bool:
    # Accepted, then reset or closed: something listens there, so power and cabling are fine.
    reset = ConnectionResetError | BrokenPipeError | ConnectionAbortedError
    return isinstance(exc.__cause__, reset) or isinstance(exc.__context__, EOFError)


def _refused_step(device: ZkDeviceSettings) -> str:
    step = (
        f"{device.host} is up but nothing serves port {device.port}/{device.transport}: "
        f"compare host/port of {device.id} in the config with the terminal's own "
        "(menu: Comm. > Ethernet)"
    )
    if device.transport == "tcp":
        step += (
            '; check that its TCP service is on; old firmware speaks UDP only: transport = "udp"'
        )
    return step


def _swapped_step(target: str, serial: str | None = None) -> str:
    # Quoted: the serial is what the device on the network says, and the line is pasted into a
    # root shell ('X; touch ...' ran the rest as a command).
    shown = shlex.quote(serial) if serial else "NEW-SERIAL"
    accept = f"punchgate devices pull {target} --accept-serial {shown}"
    return (
        f"a different terminal answers at {target}'s address. If it replaced the old one on "
        f"purpose, accept it: {accept}; otherwise fix host for {target} in the config"
    )
