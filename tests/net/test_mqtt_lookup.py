"""The broker given by host name: the lookup is bounded by connect_timeout (daemon and doctor)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.doctor.broker_checks import check_broker
from agent.localbroker import BrokerTls, LocalMosquitto
from agent.mqtt.connection import MqttConnection
from drivers.netaddr import Resolver
from tests.mqtt.conftest import fast_options
from tests.mqtt.test_connection import _make_ca, _make_leaf
from tests.net.support import BOUND, dead_dns, hosts_file
from tests.support.wait import wait_for


class _Quiet:
    def on_connected(self, generation: int, broker_url: str) -> None: ...
    def on_disconnected(self, generation: int, reason: str) -> None: ...
    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> None: ...
    def on_message(self, generation: int, message: object) -> None: ...


def _wait_for_error(connection: MqttConnection, text: str) -> str:
    def error() -> str | None:
        last = connection.status().last_error or ""
        return last if text in last else None

    return wait_for(error, timeout=BOUND, what=f"a connect error naming {text}")


def test_a_broker_name_the_dns_never_answers_is_a_connect_failure_within_connect_timeout(
    broker: LocalMosquitto,
) -> None:
    with dead_dns() as dns:
        options = fast_options(
            [f"mqtt://broker.site.lan:{broker.port}", f"mqtt://localhost:{broker.port}"],
            connect_timeout=0.3,
        )
        names = {"localhost": "127.0.0.1"}

        def lookup(host: str, *rest: Any) -> Any:
            return hosts_file(names)(host, *rest) if host in names else dns(host, *rest)

        connection = MqttConnection(options, _Quiet(), resolver=Resolver(lookup)).start()
        try:
            error = _wait_for_error(connection, "broker.site.lan")
            # The next broker is tried while the first name's lookup still hangs.
            connection.wait_connected(BOUND)
            assert not dns.release.is_set()
            assert connection.status().broker_url == f"mqtt://localhost:{broker.port}"
        finally:
            connection.close()
    assert error.startswith(f"mqtt://broker.site.lan:{broker.port}: could not look up")
    assert "within 0.3 s" in error and "/etc/resolv.conf" in error


def test_close_is_not_held_up_by_a_lookup_that_never_answers() -> None:
    with dead_dns() as dns:
        options = fast_options("mqtt://broker.site.lan:1883", connect_timeout=5)
        connection = MqttConnection(options, _Quiet(), resolver=Resolver(dns)).start()
        wait_for(lambda: dns.calls, timeout=BOUND, what="the network thread's lookup")
        connection.close(timeout=BOUND)
        assert not connection._thread.is_alive()  # ended within connect_timeout, lookup hanging
        assert not dns.release.is_set()


def test_a_broker_at_localhost_is_reached_through_the_real_resolver(
    broker: LocalMosquitto,
) -> None:
    options = fast_options(f"mqtt://localhost:{broker.port}")
    connection = MqttConnection(options, _Quiet()).start()
    try:
        connection.wait_connected(BOUND)
        assert connection.connected
    finally:
        connection.close()


@pytest.fixture(scope="module")
def named_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for the name ``localhost`` only (no IP address in it)."""
    cwd = tmp_path_factory.mktemp("named-pki")
    _make_ca(cwd, "ca")
    _make_leaf(cwd, "server", "ca", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    return cwd


@pytest.fixture
def named_tls_broker(tmp_path: Path, named_pki: Path) -> Iterator[LocalMosquitto]:
    tls = BrokerTls(named_pki / "ca.crt", named_pki / "server.crt", named_pki / "server.key")
    broker = LocalMosquitto(tmp_path / "tls-broker", tls=tls).start()
    yield broker
    broker.stop()


def test_tls_checks_the_broker_certificate_against_the_host_name_not_its_address(
    named_tls_broker: LocalMosquitto, named_pki: Path
) -> None:
    url = f"mqtts://localhost:{named_tls_broker.port}"
    options = fast_options(url, ca_file=named_pki / "ca.crt")
    connection = MqttConnection(options, _Quiet()).start()
    try:
        connection.wait_connected(BOUND)  # the certificate names localhost, not 127.0.0.1
    finally:
        connection.close()
    doctor = check_broker(url, options, 3.0)
    # (The test certificate expires in 2 days: its own check warns, beside the point here.)
    assert [(r.name, r.verdict) for r in doctor if r.name != "certificate"] == [
        ("DNS", "ok"),
        ("TCP connect", "ok"),
        ("TLS handshake", "ok"),
        ("MQTT login", "ok"),
    ], [r.detail for r in doctor]
    assert "host name localhost matches" in doctor[2].detail


def test_the_doctor_reports_a_dns_server_that_does_not_answer_within_its_timeout() -> None:
    with dead_dns() as dns:
        options = fast_options("mqtt://broker.site.lan:1883")
        results = check_broker(options.urls[0], options, 0.3, resolver=Resolver(dns))
        assert not dns.release.is_set()
    assert [(r.name, r.verdict) for r in results][:2] == [("DNS", "fail"), ("TCP connect", "skip")]
    dns_result = results[0]
    assert "no answer from the DNS server for broker.site.lan within 0.3s" in dns_result.detail
    assert "/etc/resolv.conf" in dns_result.next_step and "IP address" in dns_result.next_step


def test_the_doctor_checks_a_broker_at_localhost(broker: LocalMosquitto) -> None:
    url = f"mqtt://localhost:{broker.port}"
    results = check_broker(url, fast_options(url), 3.0)
    verdicts = {r.name: r.verdict for r in results}
    assert verdicts["DNS"] == "ok" and verdicts["MQTT login"] == "ok", [r.detail for r in results]
    assert "127.0.0.1" in results[0].detail


def test_the_doctor_looks_the_broker_up_once_and_connects_to_what_the_dns_step_found(
    broker: LocalMosquitto,
) -> None:
    url = f"mqtt://broker.site.lan:{broker.port}"
    with dead_dns() as dns:
        answers = [hosts_file({"broker.site.lan": "127.0.0.1"})]

        def once(host: str, *rest: Any) -> Any:
            # Answers the first lookup, then goes silent (a DNS server that just died).
            return answers.pop()(host, *rest) if answers else dns(host, *rest)

        results = check_broker(url, fast_options(url), 2.0, resolver=Resolver(once))
        assert dns.calls == []
    verdicts = {r.name: r.verdict for r in results}
    assert verdicts["TCP connect"] == "ok" and verdicts["MQTT login"] == "ok", [
        r.detail for r in results
    ]
