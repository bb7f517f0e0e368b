"""The doctor on a broken site: each failure blames the component that is broken.

Real sockets on 127.0.0.1: a port where nothing listens (the terminal's IP is right but its
TCP service is off, or the port is a typo), and the doctor's own report as the technician reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.daemon.status_file import write_status
from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from agent.localbroker import BrokerTls, LocalMosquitto, free_port
from agent.wiring import build_driver
from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, Pki, cli, write_config
from tests.cli.test_doctor_local import device_punch
from tests.support.users import other_user


def device_results(config: Path, device: str) -> dict[str, CheckResult]:
    report = run_doctor(config, build=build_driver, only=["devices"], timeout=2.0)
    return {r.name: r for r in report.results if r.family == "devices" and r.target == device}


def test_refused_terminal_port_points_at_the_port_not_at_power_and_cable(
    make_config: Callable[..., Path],
) -> None:
    """A refusal is an answer: the terminal (or something) is up at that IP; the port is wrong."""
    port = free_port()
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": port}]
    )
    reachable = device_results(config, "lobby-1")["reachable"]
    assert reachable.verdict == Verdict.FAIL
    assert "refused the connection" in reachable.detail
    assert "power" not in reachable.next_step
    assert f"port ({port})" in reachable.next_step or "port" in reachable.next_step
    assert 'transport = "udp"' in reachable.next_step


def test_plain_url_on_a_tls_port_says_the_broker_hung_up_not_that_it_timed_out(
    tmp_path: Path, pki: Pki, make_config: Callable[..., Path]
) -> None:
    """Mosquitto's TLS listener drops a plain CONNECT at once: no "within 20s" when it took 0.1."""
    tls = BrokerTls(pki.ca_file, pki.cert_file, pki.key_file)
    with LocalMosquitto(tmp_path / "tls-broker", tls=tls) as server:
        config = make_config(mqtt={"url": f"mqtt://127.0.0.1:{server.port}"})
        report = run_doctor(config, build=build_driver, only=["broker"], timeout=20.0)
    login = next(r for r in report.results if r.name == "MQTT login")
    assert login.verdict == Verdict.FAIL
    assert "within 20s" not in login.detail
    assert "closed the connection" in login.detail
    assert "mqtts://" in login.next_step
    assert login.elapsed < 10


def daemon_status(state_dir: Path, broker: dict[str, object]) -> None:
    """A fresh status file of a running daemon (this process stands in for it)."""
    write_status(
        state_dir,
        {
            "pid": os.getpid(),
            "updated_unix": time.time(),
            "interval_s": 15,
            "state": "running",
            "devices": [],
            "broker": broker,
        },
    )


def test_doctor_fails_the_broker_when_the_running_daemon_cannot_connect_though_its_probe_can(
    tmp_path: Path, broker: LocalMosquitto, make_config: Callable[..., Path]
) -> None:
    """The doctor's own login works; the service's does not: punches are not delivered."""
    error = "mqtt connection failed unexpectedly: RuntimeError('...')"
    daemon_status(
        tmp_path / "state",
        {"connected": False, "broker_url": None, "last_error": error, "reconnect_attempts": 7},
    )
    config = make_config(mqtt={"url": broker.url})
    report = run_doctor(config, build=build_driver, only=["broker"], timeout=2.0)
    by_name = {r.name: r for r in report.results}
    assert by_name["MQTT login"].verdict == Verdict.OK
    daemon = by_name["daemon connection"]
    assert daemon.verdict == Verdict.FAIL and report.failed
    assert error in daemon.detail
    assert "punchgate status" in daemon.next_step


def test_doctor_reports_the_running_daemons_broker_connection_as_ok_when_connected(
    tmp_path: Path, broker: LocalMosquitto, make_config: Callable[..., Path]
) -> None:
    daemon_status(
        tmp_path / "state",
        {"connected": True, "broker_url": broker.url, "last_error": None, "delivered": 12},
    )
    report = run_doctor(
        make_config(mqtt={"url": broker.url}), build=build_driver, only=["broker"], timeout=2.0
    )
    daemon = next(r for r in report.results if r.name == "daemon connection")
    assert daemon.verdict == Verdict.OK and broker.url in daemon.detail
    assert not report.failed


@pytest.mark.parametrize("state_mode", [0o700, 0o755])
def test_doctor_as_a_user_without_access_to_the_state_reports_it_instead_of_crashing(
    state_mode: int,
) -> None:
    """sudo forgotten while the service runs: its status file and outbox are not readable."""
    root = Path(tempfile.mkdtemp(prefix="punchgate-doctor-perm-"))
    try:
        root.chmod(0o755)
        state = root / "state"
        config = write_config(root / "punchgate.toml", state_dir=state)
        config.chmod(0o644)
        with Outbox.open(state / "outbox.db", GATEWAY):
            pass
        daemon_status(state, {"connected": True, "broker_url": "mqtt://127.0.0.1:1"})
        for path in state.iterdir():
            path.chmod(0o600 if path.is_file() else 0o700)
        state.chmod(state_mode)
        with other_user():
            result = cli(
                "doctor",
                "--only",
                "outbox",
                "--only",
                "broker",
                "--only",
                "devices",
                "-c",
                str(config),
            )
    finally:
        (root / "state").chmod(0o700)
        shutil.rmtree(root)
    assert result.code == 6, result
    assert "permission denied" in result.stdout
    assert "sudo" in result.stdout or "service user" in result.stdout


def test_one_punch_the_backend_never_takes_is_not_blamed_on_the_broker(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """Later punches are delivered, one old one keeps failing: a poison punch, not the broker."""
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([device_punch(1)], received_at=an_hour_ago)
        outbox.add_punches([device_punch(2), device_punch(3), device_punch(4)])
        outbox.mark_failed_seqs([1], "no acknowledgement from the backend within ack_timeout")
        outbox.mark_delivered_seqs([2, 3, 4])
        (poison,) = outbox.list(pending_only=True)
    report = run_doctor(make_config(), build=build_driver, only=["outbox"], timeout=2.0)
    pending = next(r for r in report.results if r.name == "pending punches")
    assert pending.verdict == Verdict.WARN
    assert "(seq 1)" in pending.detail and "up to seq 4" in pending.detail
    assert "no acknowledgement from the backend" in pending.detail
    assert "broker checks" not in pending.next_step
    assert f"punchgate outbox show {poison.id}" in pending.next_step


def test_doctor_for_a_mistyped_device_is_a_usage_error_not_an_all_clear(
    make_config: Callable[..., Path],
) -> None:
    """`--device lobby-2` for lobby-1 checked nothing and said '1 ok', exit 0."""
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": free_port()}]
    )
    result = cli("doctor", "--only", "devices", "--device", "lobby-2", "-c", str(config))
    assert result.code == 2, result
    assert "lobby-2" in result.stderr and "lobby-1" in result.stderr
    assert "0 failed" not in result.stdout


def live_status(state_dir: Path, **fields: object) -> None:
    status: dict[str, object] = {
        "pid": os.getpid(),
        "updated_unix": time.time(),
        "updated_at": "2026-11-22T08:00:00+00:00",
        "interval_s": 15,
        "state": "running",
        "healthy": True,
        "unhealthy": [],
        "devices": [],
    }
    write_status(state_dir, {**status, **fields})


def daemon_check(config: Path) -> CheckResult:
    report = run_doctor(config, build=build_driver, only=["systemd"], timeout=2.0)
    return next(r for r in report.results if r.name == "live status")


def test_doctor_without_systemd_reports_a_crashed_daemon(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A gateway without systemd (a container, run by hand): the doctor said nothing of it."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    live_status(tmp_path / "state", pid=int(gone.stdout))
    check = daemon_check(make_config())
    assert check.verdict == Verdict.FAIL
    assert f"pid {int(gone.stdout)} is gone" in check.detail
    assert "punchgate run" in check.next_step or "systemctl" in check.next_step


def test_doctor_reports_a_hung_daemon_from_its_stale_status(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    live_status(tmp_path / "state", updated_unix=time.time() - 3600)
    check = daemon_check(make_config())
    assert check.verdict == Verdict.FAIL and "may be hung" in check.detail


def test_doctor_reports_an_unhealthy_daemon_and_a_healthy_one(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    config = make_config()
    live_status(tmp_path / "state", healthy=False, unhealthy=["delivery"])
    sick = daemon_check(config)
    assert sick.verdict == Verdict.FAIL and "delivery" in sick.detail
    live_status(tmp_path / "state")
    assert daemon_check(config).verdict == Verdict.OK


def test_doctor_with_no_live_status_warns_that_the_daemon_never_ran_here(
    make_config: Callable[..., Path],
) -> None:
    check = daemon_check(make_config())
    assert check.verdict == Verdict.WARN and "status.json" in check.detail


@pytest.mark.parametrize("locked", ["config", "password"])
def test_doctor_without_sudo_on_a_private_config_says_run_with_sudo_not_fix_the_file(
    locked: str,
) -> None:
    """The config (0640 root:punchgate) and password file are fine; the user lacks access."""
    root = Path(tempfile.mkdtemp(prefix="punchgate-doctor-conf-"))
    try:
        root.chmod(0o755)
        secret = root / "mqtt-password"
        secret.write_text("s3cret\n", encoding="utf-8")
        secret.chmod(0o600 if locked == "password" else 0o644)
        config = write_config(
            root / "punchgate.toml",
            state_dir=root / "state",
            mqtt={"url": "mqtt://127.0.0.1:1", "username": "gw", "password_file": str(secret)},
        )
        config.chmod(0o600 if locked == "config" else 0o644)
        if os.geteuid() != 0:
            (secret if locked == "password" else config).chmod(0)
        with other_user():
            result = cli("doctor", "-c", str(config))
    finally:
        shutil.rmtree(root)
    assert result.code == 6, result
    assert "Permission denied" in result.stdout
    assert "sudo" in result.stdout
    assert "fix the file" not in result.stdout


def test_terminal_host_name_that_does_not_resolve_points_at_dns_not_at_power_and_cable(
    make_config: Callable[..., Path],
) -> None:
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "lobby-1.invalid", "port": 4370}]
    )
    reachable = device_results(config, "lobby-1")["reachable"]
    assert reachable.verdict == Verdict.FAIL and "cannot be resolved" in reachable.detail
    assert "power" not in reachable.next_step
    assert "getent hosts lobby-1.invalid" in reachable.next_step


def test_terminal_port_that_accepts_and_drops_the_connection_is_not_blamed_on_power(
    broker: LocalMosquitto, make_config: Callable[..., Path]
) -> None:
    """A typo'd port where another service listens (here the MQTT broker) drops our CONNECT."""
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": broker.port}]
    )
    reachable = device_results(config, "lobby-1")["reachable"]
    assert reachable.verdict == Verdict.FAIL
    assert "power" not in reachable.next_step
    assert f"port {broker.port}" in reachable.next_step
    assert "only session" in reachable.next_step


def test_daemon_connection_of_a_failover_config_names_one_broker_url(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    urls = [f"mqtt://127.0.0.1:{free_port()}", f"mqtt://127.0.0.1:{free_port()}"]
    daemon_status(tmp_path / "state", {"connected": False, "last_error": "refused"})
    report = run_doctor(make_config(mqtt={"url": urls}), build=build_driver, only=["broker"])
    daemon = next(r for r in report.results if r.name == "daemon connection")
    assert daemon.target == urls[0]


def test_a_terminal_clock_with_an_impossible_date_fails_the_clock_check(
    make_config: Callable[..., Path],
) -> None:
    """The ZK driver reports clock=None exactly when GET_TIME decodes to no real date (a dead
    clock battery, a corrupt RTC); every punch then gets that date. It was a quiet 'skip'."""
    from agent.doctor.terminal_checks import _clock
    from config import load_settings
    from drivers.base import DeviceInfo

    config = make_config(devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1"}])
    settings = load_settings(config)
    info = DeviceInfo(serial="SIM-A", clock=None, extra={"drift_seconds": None})
    check = _clock(settings, settings.devices[0], info)  # type: ignore[arg-type]
    assert check.verdict == Verdict.FAIL
    assert "impossible" in check.detail
    assert "punchgate devices time lobby-1 --set" in check.next_step


def test_doctor_for_devices_with_none_configured_warns_instead_of_an_empty_all_clear(
    make_config: Callable[..., Path],
) -> None:
    report = run_doctor(make_config(), build=build_driver, only=["devices"], timeout=2.0)
    devices = [r for r in report.results if r.family == "devices"]
    assert [r.verdict for r in devices] == [Verdict.WARN]
    assert "[[devices]]" in devices[0].next_step
