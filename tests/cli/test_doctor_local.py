"""The doctor's local checks: config file, outbox (real SQLite files) and the systemd service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from agent.doctor.systemd_checks import check_service, systemd_available
from buffer.outbox import Outbox
from drivers.base import Punch, PunchState
from tests.buffer.factory import punches
from tests.buffer.tamper import query, shift_device_time
from tests.cli.conftest import GATEWAY


def never_builds(*_args: object) -> object:
    raise AssertionError("no terminal should be contacted")


def results_of(config: Path, family: str) -> dict[str, CheckResult]:
    report = run_doctor(config, build=never_builds, only=[family], timeout=3)  # type: ignore[arg-type]
    return {r.name: r for r in report.results if r.family == family}


def device_punch(minute: int, employee: str = "7") -> Punch:
    local = datetime(2026, 11, 2, 8, minute)
    return Punch(
        device_id="lobby-1",
        device_serial="SER1",
        employee=employee,
        device_time=local,
        time_utc=(local - timedelta(hours=1)).replace(tzinfo=UTC),
        utc_offset_minutes=60,
        state=PunchState.IN,
    )


def test_missing_config_fails_and_skips_every_other_family(tmp_path: Path) -> None:
    report = run_doctor(tmp_path / "nope.toml", build=never_builds)  # type: ignore[arg-type]
    assert report.failed
    first = report.results[0]
    assert first.family == "config" and first.verdict == Verdict.FAIL
    assert "no such file" in first.detail and "punchgate config check" in first.next_step
    assert {r.family for r in report.results[1:]} == {"outbox", "broker", "devices", "systemd"}
    assert all(r.verdict == Verdict.SKIP for r in report.results[1:])


def test_readable_password_file_is_a_warning_to_chmod(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    (tmp_path / "state").mkdir()
    config = make_config(mqtt={"url": "mqtt://127.0.0.1:1883", "password_file": str(secret)})
    results = results_of(config, "config")
    assert results["config file"].verdict == Verdict.OK
    assert results["state directory"].verdict == Verdict.OK
    assert results["devices"].verdict == Verdict.WARN  # none configured
    pw = results["mqtt.password_file"]
    assert pw.verdict == Verdict.WARN and "every user" in pw.detail
    assert pw.next_step == f"chown root:punchgate {secret} && chmod 640 {secret}"
    secret.chmod(0o640)  # the documented install: group read for the service's group
    assert results_of(config, "config")["mqtt.password_file"].verdict == Verdict.OK


def test_no_outbox_yet_is_a_warning_and_the_doctor_does_not_create_one(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    results = results_of(make_config(), "outbox")
    assert results["outbox file"].verdict == Verdict.WARN
    assert results["integrity"].verdict == Verdict.SKIP
    assert not (tmp_path / "state" / "outbox.db").exists()


def test_healthy_outbox_with_a_fresh_backlog_is_ok(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([device_punch(1), device_punch(2)])
    results = results_of(make_config(), "outbox")
    assert results["integrity"].verdict == Verdict.OK
    assert results["free disk"].verdict == Verdict.OK
    pending = results["pending punches"]
    assert pending.verdict == Verdict.OK and pending.detail.startswith("2 waiting")


def test_punches_waiting_for_two_days_fail_with_the_oldest_seq(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    two_days_ago = datetime.now(UTC) - timedelta(days=2, minutes=5)
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([device_punch(1)], received_at=two_days_ago)
        outbox.add_punches([device_punch(2)])
    pending = results_of(make_config(), "outbox")["pending punches"]
    assert pending.verdict == Verdict.FAIL
    assert "2 waiting" in pending.detail and "(seq 1)" in pending.detail
    assert "stored 2d0h ago" in pending.detail
    assert "broker checks" in pending.next_step


def test_disk_below_the_reserve_fails(tmp_path: Path, make_config: Callable[..., Path]) -> None:
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([device_punch(1)])
    config = make_config(outbox={"disk_reserve_mb": 100_000_000})  # ~95 TiB: never available
    disk = results_of(config, "outbox")["free disk"]
    assert disk.verdict == Verdict.FAIL and "below the reserve" in disk.detail


def test_corrupt_outbox_fails_integrity_and_is_left_untouched(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    garbage = b"this is not a database" * 200
    (state / "outbox.db").write_bytes(garbage)
    results = results_of(make_config(), "outbox")
    integrity = results["integrity"]
    assert integrity.verdict == Verdict.FAIL
    assert "outbox restore" in integrity.next_step
    assert results["pending punches"].verdict == Verdict.SKIP
    # The doctor diagnoses; repairing (moving the file aside) is left to a deliberate restart.
    assert (state / "outbox.db").read_bytes() == garbage
    assert not list(state.glob("outbox.db.corrupt-*"))


def test_wrong_wall_marks_fail_integrity_with_the_clearing_step_not_a_restore(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY) as outbox:
        outbox.add_punches(punches(0, 3))  # one terminal's batch: marked wall_ok by the writer
    shift_device_time(path, 2, timedelta(minutes=30))
    before = query(path, "SELECT * FROM punches ORDER BY seq")
    integrity = results_of(make_config(), "outbox")["integrity"]
    assert integrity.verdict == Verdict.FAIL and "seq 2" in integrity.detail
    assert "--clear-bad-marks" in integrity.next_step
    assert "restore" not in integrity.next_step  # the file is sound: a restore would lose rows
    assert query(path, "SELECT * FROM punches ORDER BY seq") == before  # diagnosed, not repaired


def test_systemd_check_is_not_applicable_without_systemd(tmp_path: Path) -> None:
    assert systemd_available("/bin/true", booted_marker=tmp_path / "no-such-dir") is None
    (result,) = check_service(None)
    assert result.verdict == Verdict.SKIP and "not applicable" in result.detail


def fake_systemctl(tmp_path: Path, answer: str, code: int) -> str:
    """A stand-in for systemctl: there is no systemd (no PID 1, no bus) in the test container."""
    script = tmp_path / "systemctl"
    script.write_text(f"#!/bin/sh\necho {answer}\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


def test_failed_service_fails_and_points_at_the_journal(tmp_path: Path) -> None:
    (result,) = check_service(fake_systemctl(tmp_path, "failed", 3))
    assert result.verdict == Verdict.FAIL
    assert "journalctl -u punchgate" in result.next_step


def test_active_service_is_ok_and_inactive_is_a_warning(tmp_path: Path) -> None:
    (active,) = check_service(fake_systemctl(tmp_path, "active", 0))
    assert active.verdict == Verdict.OK
    (inactive,) = check_service(fake_systemctl(tmp_path, "inactive", 3))
    assert inactive.verdict == Verdict.WARN and "enable --now" in inactive.next_step
