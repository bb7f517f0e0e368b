"""The doctor's terminal checks against the ZK simulator over real loopback sockets."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.daemon.status_file import write_status
from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from agent.localbroker import free_port
from agent.wiring import build_driver
from buffer.outbox import Outbox
from drivers.zk.simulator import ZkSimulator
from tests.cli.conftest import GATEWAY, cli

TZ = "Europe/Berlin"


@pytest.fixture
def sim() -> Iterator[ZkSimulator]:
    """A terminal whose clock shows Berlin time, with a small log (capacity 100)."""
    with ZkSimulator(serial="SIM-A", comm_key=4711, record_capacity=100) as terminal:
        terminal.set_clock(datetime.now(ZoneInfo(TZ)).replace(tzinfo=None))
        yield terminal


def zk(device_id: str, port: int, **extra: object) -> dict[str, object]:
    return {"id": device_id, "kind": "zk", "host": "127.0.0.1", "port": port, **extra}


def device_results(config: Path, device: str, timeout: float = 2.0) -> dict[str, CheckResult]:
    report = run_doctor(config, build=build_driver, only=["devices"], timeout=timeout)
    return {r.name: r for r in report.results if r.family == "devices" and r.target == device}


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_healthy_terminal_passes_every_check(
    sim: ZkSimulator, make_config: Callable[..., Path], transport: str
) -> None:
    config = make_config(devices=[zk("lobby-1", sim.port, comm_key=4711, transport=transport)])
    results = device_results(config, "lobby-1")
    assert [r.verdict for r in results.values()] == [Verdict.OK] * 5, results
    assert "SIM-A" in results["serial number"].detail
    assert "0 of 100 records" in results["log fill"].detail


def test_wrong_comm_key_fails_with_where_to_find_the_right_one(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    results = device_results(make_config(devices=[zk("lobby-1", sim.port, comm_key=1)]), "lobby-1")
    assert results["reachable"].verdict == Verdict.OK
    key = results["comm key"]
    assert key.verdict == Verdict.FAIL and "comm_key" in key.next_step
    assert results["clock"].verdict == Verdict.SKIP


def test_swapped_terminal_fails_the_serial_check(
    tmp_path: Path, sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([], device_id="lobby-1", device_serial="SIM-A")
    config = make_config(devices=[zk("lobby-1", sim.port, comm_key=4711)])
    assert device_results(config, "lobby-1")["serial number"].verdict == Verdict.OK
    sim.set_serial("SIM-B")  # someone replaced the terminal (or the IP now points elsewhere)
    serial = device_results(config, "lobby-1")["serial number"]
    assert serial.verdict == Verdict.FAIL
    assert "SIM-B" in serial.detail and "SIM-A" in serial.detail
    assert "punchgate devices pull lobby-1 --accept-serial SIM-B" in serial.next_step


def test_clock_drift_beyond_max_drift_fails_unless_clock_sync_is_on(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    sim.jump_clock(timedelta(minutes=10))
    config = make_config(
        devices=[
            zk("lobby-1", sim.port, comm_key=4711),
            zk("lobby-2", sim.port, comm_key=4711, clock_sync=True),
        ]
    )
    report = run_doctor(config, build=build_driver, only=["devices"], timeout=2)
    clocks = {r.target: r for r in report.results if r.name == "clock"}
    assert clocks["lobby-1"].verdict == Verdict.FAIL
    # The terminal clock has whole seconds: 10 minutes ahead reads as 599 or 600 s.
    assert re.search(r": (599|600|601)s ahead", clocks["lobby-1"].detail), clocks["lobby-1"]
    assert "punchgate devices time lobby-1 --set" in clocks["lobby-1"].next_step
    assert clocks["lobby-2"].verdict == Verdict.WARN


def test_clock_sync_does_not_promise_a_correction_it_will_refuse(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    """clock_sync sets at most about an hour on its own (a gateway booted with a stale time
    must not set every terminal back by days): beyond that the doctor says what to check."""
    sim.jump_clock(timedelta(days=2))
    config = make_config(devices=[zk("lobby-1", sim.port, comm_key=4711, clock_sync=True)])
    clock = device_results(config, "lobby-1")["clock"]
    assert clock.verdict == Verdict.WARN
    assert "sets the clock at its next poll" not in clock.next_step
    assert "timedatectl" in clock.next_step
    assert "punchgate devices time lobby-1 --set --force" in clock.next_step


def test_drift_of_whole_hours_points_at_the_timezone_setting(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    sim.jump_clock(timedelta(hours=-1))  # a terminal left on winter time, or the wrong zone
    config = make_config(devices=[zk("lobby-1", sim.port, comm_key=4711)])
    clock = device_results(config, "lobby-1")["clock"]
    assert clock.verdict == Verdict.FAIL
    assert "whole number of hours" in clock.next_step and "Europe/Berlin" in clock.next_step


def test_nearly_full_log_fails_and_says_how_to_make_room(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    sim.generate(users=3, records=97, seed=1)
    results = device_results(
        make_config(devices=[zk("lobby-1", sim.port, comm_key=4711)]), "lobby-1"
    )
    fill = results["log fill"]
    assert fill.verdict == Verdict.FAIL and "97 of 100 records (97%)" in fill.detail
    assert "clear_after_read" in fill.next_step


def test_silent_and_dead_terminals_fail_within_their_timeout_concurrently(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    """Three silent terminals and a refused port cost about one timeout, not minutes."""
    sim.faults.silent = True
    devices = [zk(f"dead-{i}", sim.port, comm_key=4711) for i in range(3)]
    devices.append(zk("gone", free_port()))
    config = make_config(devices=devices)
    started = time.monotonic()
    report = run_doctor(config, build=build_driver, only=["devices"], timeout=1.0)
    took = time.monotonic() - started
    reachable = {r.target: r for r in report.results if r.name == "reachable"}
    assert set(reachable) == {"dead-0", "dead-1", "dead-2", "gone"}
    assert all(r.verdict == Verdict.FAIL for r in reachable.values())
    assert "within 1s" in reachable["dead-0"].detail
    assert "refused" in reachable["gone"].detail
    # A refusal is an answer from 127.0.0.1: the step names it and its port, not power/cable.
    assert "127.0.0.1 is up" in reachable["gone"].next_step
    assert "power" in reachable["dead-0"].next_step and "power" not in reachable["gone"].next_step
    assert took < 15, f"dead terminals held the doctor for {took:.1f}s"


def test_terminal_busy_with_the_running_daemon_is_a_warning_not_a_failure(
    tmp_path: Path, sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    sim.faults.refuse = True  # as a one-session terminal does while the daemon holds it
    state_dir = tmp_path / "state"
    write_status(
        state_dir,
        {
            "pid": os.getpid(),
            "updated_unix": time.time(),
            "interval_s": 15,
            "state": "running",
            "devices": [{"device_id": "lobby-1", "state": "online"}],
        },
    )
    config = make_config(devices=[zk("lobby-1", sim.port, comm_key=4711, timeout=1)])
    reachable = device_results(config, "lobby-1")["reachable"]
    assert reachable.verdict == Verdict.WARN and "sees it online" in reachable.detail


def test_doctor_command_prints_next_steps_and_exits_6_on_failure(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    config = make_config(devices=[zk("lobby-1", sim.port, comm_key=1)])
    result = cli("doctor", "--only", "devices", "-c", str(config), "--timeout", "2")
    assert result.code == 6, result
    assert "FAIL" in result.stdout and "Next steps:" in result.stdout
    assert "comm_key" in result.stdout
    as_json = cli("doctor", "--only", "devices", "-c", str(config), "--json", "--timeout", "2")
    assert as_json.code == 6
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["summary"]["fail"] == 1
    key = next(c for c in data["checks"] if c["check"] == "comm key")
    assert key["verdict"] == "fail" and key["target"] == "lobby-1" and key["next_step"]


def test_doctor_command_exits_0_when_only_warnings_and_rejects_unknown_family(
    sim: ZkSimulator, make_config: Callable[..., Path]
) -> None:
    sim.jump_clock(timedelta(minutes=5))  # drifted, but clock_sync will set it: a warning
    config = make_config(devices=[zk("lobby-1", sim.port, comm_key=4711, clock_sync=True)])
    result = cli("doctor", "--only", "devices", "-c", str(config))
    assert result.code == 0, result
    assert "5 ok, 1 warning(s), 0 failed" in result.stdout  # the config load counts as one ok
    assert "the service sets the clock" in result.stdout
    bad = cli("doctor", "--only", "printer", "-c", str(config))
    assert bad.code == 2 and "--only printer: use one of config, outbox" in bad.stderr


def test_serial_clock_is_checked_by_opening_its_port_and_the_rest_does_not_apply(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    serial = {"kind": "serial", "format": "em4100"}
    config = make_config(
        devices=[
            {"id": "dock-1", "url": "loop://", **serial},
            {"id": "dock-2", "url": str(tmp_path / "ttyUSB9"), **serial},
        ]
    )
    report = run_doctor(config, build=build_driver, only=["devices"], timeout=2)
    by = {(r.target, r.name): r for r in report.results if r.family == "devices"}
    assert by[("dock-1", "reachable")].verdict == Verdict.OK
    assert by[("dock-1", "clock")].verdict == Verdict.SKIP
    missing = by[("dock-2", "reachable")]
    assert missing.verdict == Verdict.FAIL and "port not found" in missing.detail
    assert "check the cable, the adapter and the url" in missing.next_step


def test_serial_clock_held_by_the_running_daemon_is_judged_by_the_daemon(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    write_status(
        tmp_path / "state",
        {
            "pid": os.getpid(),
            "updated_unix": time.time(),
            "interval_s": 15,
            "state": "running",
            "devices": [{"device_id": "dock-1", "state": "unreachable"}],
        },
    )
    config = make_config(
        devices=[{"id": "dock-1", "kind": "serial", "format": "em4100", "url": "loop://"}]
    )
    reachable = device_results(config, "dock-1")["reachable"]
    assert reachable.verdict == Verdict.FAIL
    assert "the running daemon reports it unreachable" in reachable.detail
