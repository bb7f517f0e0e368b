"""The doctor on a broken site: each failure blames the component that is broken.

Real sockets on 127.0.0.1: a port where nothing listens (the terminal's IP is right but its
TCP service is off, or the port is a typo), and the doctor's own report as the technician reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from agent.localbroker import free_port
from agent.wiring import build_driver


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
