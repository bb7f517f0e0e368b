"""The systemd unit: verified by systemd-analyze, hardened, and runnable as written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "punchgate.service"


def unit_options() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        options.setdefault(f"{section}.{key}", []).append(value)
    return options


def test_unit_is_type_notify_with_watchdog_and_restart() -> None:
    opts = unit_options()
    assert opts["Service.Type"] == ["notify"]
    assert opts["Service.Restart"] == ["on-failure"]
    assert opts["Service.WatchdogSec"] == ["60s"]
    assert opts["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_unit_never_stops_restarting_a_failing_agent() -> None:
    """A failed start (a config error too) is retried every RestartSec for as long as it fails.

    systemd's default start limit (5 starts in 10 s) would leave an unattended site without
    punches after a burst of quick failures, until someone logs in.
    """
    opts = unit_options()
    assert opts["Unit.StartLimitIntervalSec"] == ["0"]
    assert opts["Service.Restart"] == ["on-failure"] and opts["Service.RestartSec"] == ["5s"]
    assert "Service.RestartPreventExitStatus" not in opts


def test_unit_is_hardened() -> None:
    opts = unit_options()
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }.items():
        assert opts[f"Service.{key}"] == [value], key
    assert opts["Service.RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "char-ttyUSB rw" in opts["Service.DeviceAllow"]
    assert opts["Service.User"] == ["punchgate"] and opts["Service.StateDirectory"] == ["punchgate"]


def test_sysusers_file_creates_the_service_user_in_dialout() -> None:
    lines = (ROOT / "systemd" / "punchgate.sysusers").read_text().splitlines()
    entries = [line.split()[:3] for line in lines if line and not line.startswith("#")]
    assert ["u", "punchgate", "-"] in entries and ["m", "punchgate", "dialout"] in entries


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found: install systemd (the CI machine has it)")
    # Point the unit at this checkout's interpreter so ExecStart exists for verification.
    fake_bin = tmp_path / "opt" / "bin"
    fake_bin.mkdir(parents=True)
    exe = fake_bin / "punchgate"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m agent.cli "$@"\n')
    exe.chmod(0o755)
    unit = tmp_path / "punchgate.service"
    unit.write_text(UNIT.read_text().replace("/opt/punchgate/bin/punchgate", str(exe)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_unit_lets_the_service_open_every_serial_port_family_of_the_supported_gateways() -> None:
    """Raspberry Pi OS: the GPIO UART (/dev/ttyAMA0, /dev/serial0 on most models) is the
    'ttyAMA' device group; DevicePolicy=closed refused it (EPERM) while dialout could open it."""
    allowed = set(unit_options()["Service.DeviceAllow"])
    for family in ("ttyS", "ttyUSB", "ttyACM", "ttyAMA"):
        assert f"char-{family} rw" in allowed, family


def test_unit_timeouts_leave_room_for_the_longest_shutdown_timeout_config_check_accepts() -> None:
    """The loader warns above SYSTEMD_SHUTDOWN_LIMIT; below it, a stop must end before
    TimeoutStopSec and a reload (up to twice it, unpinged) before WatchdogSec."""
    from config.loader import SYSTEMD_SHUTDOWN_LIMIT

    opts = unit_options()
    stop = float(opts["Service.TimeoutStopSec"][0].removesuffix("s"))
    watchdog = float(opts["Service.WatchdogSec"][0].removesuffix("s"))
    assert SYSTEMD_SHUTDOWN_LIMIT + 5 <= stop and 2 * SYSTEMD_SHUTDOWN_LIMIT + 5 <= watchdog
