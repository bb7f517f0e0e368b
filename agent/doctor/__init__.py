"""``punchgate doctor``: find what is wrong on a gateway and say what to do about it.

One module per check family (config, outbox, broker, devices, systemd); ``run_doctor`` loads the
config, builds a job per outbox / broker URL / device / service, and runs them concurrently,
each within its own timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.doctor.broker_checks import broker_jobs, daemon_connection
from agent.doctor.config_checks import check_config_files, load_config, skipped_without_config
from agent.doctor.daemon_checks import check_live_status
from agent.doctor.daemon_view import daemon_view
from agent.doctor.outbox_checks import outbox_jobs
from agent.doctor.result import CheckResult, Job, Verdict, warn
from agent.doctor.runner import run_jobs
from agent.doctor.systemd_checks import check_service, systemd_available
from agent.doctor.terminal_checks import DriverFactory, device_jobs
from buffer.outbox import Outbox
from config import Settings
from config.errors import PunchgateError, UsageError
from config.loader import example_config, resolve_path

FAMILIES = ("config", "outbox", "broker", "devices", "systemd")

__all__ = ["FAMILIES", "CheckResult", "DoctorReport", "Verdict", "run_doctor"]


@dataclass(frozen=True)
class DoctorReport:
    """Every result, in family order; ``failed`` decides the exit code."""

    results: list[CheckResult]

    @property
    def failed(self) -> bool:
        return any(r.verdict == Verdict.FAIL for r in self.results)

    def counts(self) -> dict[str, int]:
        """How many checks came out ok, warn, fail and skip."""
        out = {v.value: 0 for v in Verdict}
        for result in self.results:
            out[result.verdict.value] += 1
        return out


def run_doctor(
    config: Path | None,
    *,
    build: DriverFactory,
    only: Iterable[str] = (),
    devices: Iterable[str] = (),
    timeout: float = 5.0,
    workers: int = 8,
    systemctl: str | None = None,
    on_done: Callable[[Job, list[CheckResult]], None] | None = None,
) -> DoctorReport:
    """Run the selected families (all by default); ``devices`` limits the terminals checked.

    A device id not in the config is a ``UsageError``: checking nothing is no all-clear.
    """
    selected = set(only) or set(FAMILIES)
    unknown = selected - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown check family {sorted(unknown)}: use {', '.join(FAMILIES)}")
    settings, results = load_config(config)
    if settings is None:
        results += [skipped_without_config(f) for f in FAMILIES[1:] if f in selected]
        return DoctorReport(results)
    unknown_devices = sorted(set(devices) - {d.id for d in settings.devices})
    if unknown_devices:
        known = ", ".join(d.id for d in settings.devices) or "none configured"
        raise UsageError(
            f"--device {', '.join(unknown_devices)}: not in {resolve_path(config)}; "
            f"configured devices: {known}"
        )
    if "config" in selected:
        results += check_config_files(settings, config)
    jobs: list[Job] = []
    daemon = daemon_view(settings.agent.state_dir)
    if "outbox" in selected:
        jobs += outbox_jobs(settings, timeout)
    if "broker" in selected:
        jobs += broker_jobs(settings, timeout)
        if (connection := daemon_connection(settings, daemon)) is not None:
            jobs.append(
                Job("broker", connection.target, connection.name, 1.0, lambda: [connection])
            )
    # (with the config family, its "devices" check says it already)
    if "devices" in selected and "config" not in selected and not settings.devices:
        results.append(
            warn(
                "devices",
                "-",
                "devices",
                "no terminals configured: nothing to check, nothing is read",
                f"add a [[devices]] section to the config (see {example_config()})",
            )
        )
    if "devices" in selected:
        jobs += device_jobs(
            settings,
            timeout=timeout,
            build=build,
            known_serials=known_serials(settings, timeout),
            daemon=daemon,
            only=set(devices) or None,
        )
    if "systemd" in selected:
        path = systemd_available(systemctl)
        jobs.append(
            Job(
                "systemd",
                "punchgate",
                "service state",
                timeout + 1.0,
                lambda: check_service(path, timeout),
            )
        )
        jobs.append(
            Job("systemd", "punchgate", "live status", timeout, lambda: check_live_status(settings))
        )
    results += run_jobs(jobs, workers=workers, on_done=on_done)
    return DoctorReport(results)


def known_serials(settings: Settings, timeout: float) -> dict[str, str | None]:
    """The serial last seen per device, from the outbox; empty when there is no outbox yet."""
    path = settings.agent.outbox_path
    try:
        if not path.exists():
            return {}
        with Outbox.open(
            path, settings.agent.gateway_id, busy_timeout=max(1.0, timeout / 2), recover=False
        ) as outbox:
            return {d.id: outbox.device_serial(d.id) for d in settings.devices}
    except (PunchgateError, PermissionError):
        return {}  # the outbox checks report why (damage, or a user without access)
