"""The doctor's broker checks against real Mosquitto brokers: plain, TLS with a test CA, auth."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agent.doctor import run_doctor
from agent.doctor.result import CheckResult, Verdict
from agent.localbroker import BrokerTls, LocalMosquitto, free_port
from tests.cli.conftest import Pki


def never_builds(*_args: object) -> object:
    raise AssertionError("no terminal should be contacted by broker checks")


def broker_results(config: Path, timeout: float = 3.0) -> dict[str, CheckResult]:
    report = run_doctor(config, build=never_builds, only=["broker"], timeout=timeout)  # type: ignore[arg-type]
    results = {r.name: r for r in report.results if r.family == "broker"}
    assert results, report.results
    return results


def test_plain_broker_passes_dns_tcp_and_anonymous_login(
    broker: LocalMosquitto, make_config: Callable[..., Path]
) -> None:
    results = broker_results(make_config(mqtt={"url": broker.url}))
    assert results["DNS"].verdict == Verdict.OK
    assert results["TCP connect"].verdict == Verdict.OK
    assert results["TLS handshake"].verdict == Verdict.SKIP
    login = results["MQTT login"]
    assert login.verdict == Verdict.OK and "anonymously" in login.detail
    assert "Success" in login.detail


def test_refused_port_fails_tcp_and_skips_the_login(make_config: Callable[..., Path]) -> None:
    results = broker_results(make_config(mqtt={"url": f"mqtt://127.0.0.1:{free_port()}"}))
    tcp = results["TCP connect"]
    assert tcp.verdict == Verdict.FAIL and "refused" in tcp.detail
    assert "broker is running" in tcp.next_step
    assert results["MQTT login"].verdict == Verdict.SKIP


def test_unknown_host_name_fails_dns(make_config: Callable[..., Path]) -> None:
    results = broker_results(make_config(mqtt={"url": "mqtt://no-such-host.invalid:1883"}))
    assert results["DNS"].verdict == Verdict.FAIL
    assert "getent hosts no-such-host.invalid" in results["DNS"].next_step
    assert results["TCP connect"].verdict == Verdict.SKIP


def test_tls_broker_certificate_expiring_soon_is_a_warning_with_the_date(
    tmp_path: Path, pki: Pki, make_config: Callable[..., Path]
) -> None:
    tls = BrokerTls(pki.ca_file, pki.cert_file, pki.key_file)
    with LocalMosquitto(tmp_path / "tls-broker", tls=tls) as server:
        results = broker_results(make_config(mqtt={"url": server.url, "ca_file": str(pki.ca_file)}))
    handshake = results["TLS handshake"]
    assert handshake.verdict == Verdict.OK, handshake
    assert "chain verified" in handshake.detail and "127.0.0.1 matches" in handshake.detail
    cert = results["certificate"]
    assert cert.verdict == Verdict.WARN
    assert "days left" in cert.detail and "CN=127.0.0.1" in cert.detail
    assert any(f"({days} days left)" in cert.detail for days in (9, 10))
    assert cert.next_step.startswith("renew the broker certificate before ")
    assert results["MQTT login"].verdict == Verdict.OK


def test_tls_broker_signed_by_another_ca_fails_verification(
    tmp_path: Path, pki: Pki, other_ca: Pki, make_config: Callable[..., Path]
) -> None:
    tls = BrokerTls(pki.ca_file, pki.cert_file, pki.key_file)
    with LocalMosquitto(tmp_path / "tls-broker", tls=tls) as server:
        config = make_config(mqtt={"url": server.url, "ca_file": str(other_ca.ca_file)})
        results = broker_results(config)
    handshake = results["TLS handshake"]
    assert handshake.verdict == Verdict.FAIL
    assert "certificate rejected" in handshake.detail
    assert "mqtt.ca_file" in handshake.next_step
    assert results["certificate"].verdict == Verdict.SKIP
    assert results["MQTT login"].verdict == Verdict.SKIP


def test_plain_url_on_a_tls_port_fails_without_hanging(
    tmp_path: Path, pki: Pki, make_config: Callable[..., Path]
) -> None:
    tls = BrokerTls(pki.ca_file, pki.cert_file, pki.key_file)
    with LocalMosquitto(tmp_path / "tls-broker", tls=tls) as server:
        results = broker_results(make_config(mqtt={"url": f"mqtt://127.0.0.1:{server.port}"}), 2)
    assert results["MQTT login"].verdict == Verdict.FAIL


def test_wrong_password_is_reported_from_the_connack(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "gw", "right-secret"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong-secret\n")
    secret.chmod(0o600)
    with LocalMosquitto(tmp_path / "auth-broker", password_file=passwords) as server:
        config = make_config(
            mqtt={"url": server.url, "username": "gw", "password_file": str(secret)}
        )
        bad = broker_results(config)
        secret.write_text("right-secret\n")
        good = broker_results(config)
    login = bad["MQTT login"]
    assert login.verdict == Verdict.FAIL
    assert "as 'gw'" in login.detail
    # Mosquitto 2.0 answers a wrong password with "Not authorized" (0x87), others with 0x86.
    assert "Not authorized" in login.detail or "Bad user name or password" in login.detail
    assert "mqtt.username" in login.next_step
    assert "wrong-secret" not in login.detail + login.next_step
    assert good["MQTT login"].verdict == Verdict.OK


def test_silent_broker_fails_within_its_timeout_not_minutes(
    make_config: Callable[..., Path],
) -> None:
    """A port that accepts TCP but never speaks MQTT costs about one timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever reads or answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        results = broker_results(make_config(mqtt={"url": f"mqtt://127.0.0.1:{port}"}), 1.0)
        took = time.monotonic() - started
    assert results["TCP connect"].verdict == Verdict.OK
    login = results["MQTT login"]
    assert login.verdict == Verdict.FAIL and "no CONNACK within 1s" in login.detail
    assert took < 15, f"a silent broker held the doctor for {took:.1f}s"


def test_mqtt_311_with_broker_acks_is_a_warning_that_punches_can_vanish_unnoticed(
    broker: LocalMosquitto, make_config: Callable[..., Path]
) -> None:
    """Mosquitto acknowledges a 3.1.1 publish its ACL refuses (or that is over its size limit)."""
    results = broker_results(make_config(mqtt={"url": broker.url, "protocol": "3.1.1"}))
    login = results["MQTT login"]
    assert login.verdict == Verdict.WARN, login
    assert "counted as delivered" in login.detail
    assert 'ack = "backend"' in login.next_step
    backend = make_config(mqtt={"url": broker.url, "protocol": "3.1.1", "ack": "backend"})
    assert broker_results(backend)["MQTT login"].verdict == Verdict.OK
