"""Doctor check on the systemd service, where systemd runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from agent.doctor.result import CheckResult, fail, ok, skip, warn

FAMILY = "systemd"
UNIT = "punchgate"
_BOOTED_MARKER = Path("/run/systemd/system")  # what sd_booted() looks at


def systemd_available(
    systemctl: str | None = None, booted_marker: Path = _BOOTED_MARKER
) -> str | None:
    """The systemctl path when systemd is PID 1 here; ``None`` in containers and without systemd."""
    path = systemctl or shutil.which("systemctl")
    if path is None or not booted_marker.is_dir():
        return None
    return path


def check_service(
    systemctl: str | None, timeout: float = 5.0, unit: str = UNIT
) -> list[CheckResult]:
    """``systemctl is-active punchgate`` read as a verdict; ``skip`` when systemd is absent."""
    name = "service state"
    if systemctl is None:
        return [skip(FAMILY, unit, name, "not applicable: systemd is not running on this machine")]
    try:
        proc = subprocess.run(
            [systemctl, "is-active", unit],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [
            fail(
                FAMILY,
                unit,
                name,
                f"systemctl did not answer within {timeout:g}s",
                "the system bus may be stuck: check 'systemctl status' and the journal",
            )
        ]
    except OSError as exc:
        return [skip(FAMILY, unit, name, f"not applicable: cannot run {systemctl}: {exc.strerror}")]
    state = (proc.stdout.strip() or proc.stderr.strip() or "unknown").splitlines()[0]
    journal = f"journalctl -u {unit} -n 50 --no-pager"
    if state == "active":
        return [ok(FAMILY, unit, name, f"{unit}.service is active")]
    if state in ("activating", "reloading", "deactivating"):
        return [
            warn(
                FAMILY, unit, name, f"{unit}.service is {state}", f"wait a moment, then: {journal}"
            )
        ]
    if state == "failed":
        return [
            fail(
                FAMILY,
                unit,
                name,
                f"{unit}.service has failed",
                f"read why: {journal}; fix it, then: sudo systemctl restart {unit}",
            )
        ]
    if state == "inactive":
        return [
            warn(
                FAMILY,
                unit,
                name,
                f"{unit}.service is not running (inactive)",
                f"start it: sudo systemctl enable --now {unit}",
            )
        ]
    return [
        warn(
            FAMILY,
            unit,
            name,
            f"{unit}.service state is {state!r} (not installed?)",
            "install it: sudo bash scripts/install.sh",
        )
    ]
