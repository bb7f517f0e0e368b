"""The doctor on a broken site: each failure blames the component that is broken.

Real sockets on 127.0.0.1: a port where nothing listens (the terminal's IP is right but its
TCP service is off, or the port is a typo), and the doctor's own report as the technician reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from agent.localbroker import BrokerTls, LocalMosquitto, free_port
from agent.wiring import build_driver
from tests.cli.conftest import Pki


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
