"""The connection: TLS with a test CA, client certificates, passwords, failover, backoff."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from agent.localbroker import BrokerTls, LocalMosquitto, free_port
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from config.errors import BrokerError
from drivers.backoff import Backoff
from tests.mqtt.conftest import fast_options, make_punches

Workers = Callable[..., DeliveryWorker]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(cwd: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN=punchgate test {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )


def _make_leaf(cwd: Path, name: str, ca: str, extensions: str) -> None:
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=cwd,
    )
    (cwd / f"{name}.ext").write_text(extensions, encoding="ascii")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA, a server certificate for 127.0.0.1, a client certificate, another CA."""
    cwd = tmp_path_factory.mktemp("pki")
    _make_ca(cwd, "ca")
    _make_ca(cwd, "other-ca")
    _make_leaf(cwd, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _make_leaf(cwd, "client", "ca", "extendedKeyUsage=clientAuth\n")
    return Pki(
        ca=cwd / "ca.crt",
        server_cert=cwd / "server.crt",
        server_key=cwd / "server.key",
        client_cert=cwd / "client.crt",
        client_key=cwd / "client.key",
        other_ca=cwd / "other-ca.crt",
    )


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[LocalMosquitto]:
    tls = BrokerTls(pki.ca, pki.server_cert, pki.server_key, require_certificate=True)
    broker = LocalMosquitto(tmp_path / "tls-broker", tls=tls).start()
    yield broker
    broker.stop()


def test_tls_with_a_test_ca_and_client_certificate_delivers(
    tls_broker: LocalMosquitto, pki: Pki, outbox: Outbox, workers: Workers
) -> None:
    assert tls_broker.url.startswith("mqtts://")
    outbox.add_punches(make_punches(10))
    options = fast_options(
        tls_broker.url, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
    )
    worker = workers(options, outbox)
    assert worker.flush(10), worker.status().last_error
    assert worker.status().broker_url == tls_broker.url


def test_tls_against_a_wrong_ca_fails_with_a_clear_broker_error(
    tls_broker: LocalMosquitto, pki: Pki, outbox: Outbox, workers: Workers
) -> None:
    options = fast_options(
        tls_broker.url, ca_file=pki.other_ca, cert_file=pki.client_cert, key_file=pki.client_key
    )
    worker = workers(options, outbox)
    with pytest.raises(BrokerError, match="TLS certificate verification failed") as caught:
        worker.connection.wait_connected(1)
    assert "mqtt.ca_file" in str(caught.value)
    assert tls_broker.url in str(caught.value)
    assert "certificate verification failed" in (worker.status().last_error or "")


def test_tls_without_the_required_client_certificate_is_refused(
    tls_broker: LocalMosquitto, pki: Pki, outbox: Outbox, workers: Workers
) -> None:
    worker = workers(fast_options(tls_broker.url, ca_file=pki.ca), outbox)
    with pytest.raises(BrokerError, match="client certificate"):
        worker.connection.wait_connected(1)


def test_unreadable_ca_file_is_a_broker_error_naming_the_setting(tmp_path: Path) -> None:
    from agent.mqtt.connection import build_ssl_context

    with pytest.raises(BrokerError, match=r"mqtt\.ca_file"):
        build_ssl_context(fast_options("mqtts://127.0.0.1:1", ca_file=tmp_path / "missing.pem"))


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "gw-1", "right horse battery"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    broker = LocalMosquitto(tmp_path / "auth-broker", password_file=passwords).start()
    yield broker
    broker.stop()


def test_password_authentication_and_refusal_without_logging_the_secret(
    password_broker: LocalMosquitto, outbox: Outbox, workers: Workers
) -> None:
    with structlog.testing.capture_logs() as logs:
        wrong = workers(
            fast_options(password_broker.url, username="gw-1", password="wrong-secret-xyz"), outbox
        )
        with pytest.raises(BrokerError, match=r"mqtt\.username") as caught:
            wrong.connection.wait_connected(1)
        wrong.stop(1)
    assert "wrong-secret-xyz" not in str(caught.value)
    assert "wrong-secret-xyz" not in repr(logs)
    assert any("refused" in str(entry.get("error", "")) for entry in logs)
    outbox.add_punches(make_punches(3))
    right = workers(
        fast_options(password_broker.url, username="gw-1", password="right horse battery"), outbox
    )
    assert right.flush(5), right.status().last_error


def test_failover_moves_to_the_next_url_when_the_first_is_down(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers
) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"
    outbox.add_punches(make_punches(5))
    worker = workers(fast_options([dead, broker.url]), outbox)
    assert worker.flush(5), worker.status().last_error
    assert worker.status().broker_url == broker.url


def test_backoff_is_exponential_with_full_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(1))
    caps = []
    for _ in range(6):
        caps.append(backoff.cap())
        assert 0.0 <= backoff.next_delay() <= caps[-1]
    assert caps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.cap() == 1.0


def test_backoff_spreads_many_gateways_over_the_whole_interval() -> None:
    """After a broker restart, 1000 gateways' first retries are not in lock-step."""
    rng = random.Random(7)
    delays = sorted(Backoff(1.0, 120.0, rng).next_delay() for _ in range(1000))
    assert delays[0] < 0.01 and delays[-1] > 0.99
    assert 0.4 < delays[500] < 0.6  # uniform: the median sits mid-interval


def test_a_verification_message_ending_in_a_full_stop_reads_as_one_sentence() -> None:
    import ssl

    from agent.mqtt.diagnose import describe_connect_error
    from agent.mqtt.options import BrokerAddress

    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "IP address mismatch, certificate is not valid for '127.0.0.1'."
    text = describe_connect_error(BrokerAddress.parse("mqtts://127.0.0.1:8883"), error)
    assert "for '127.0.0.1'; check that mqtt.ca_file" in text


def test_an_encrypted_client_key_is_a_broker_error_not_a_pass_phrase_prompt(
    tmp_path: Path,
) -> None:
    """OpenSSL asked 'Enter PEM pass phrase:' on the terminal and blocked run/doctor/receive."""
    from agent.mqtt.connection import build_ssl_context

    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", "key.pem", "-out",
            "cert.pem", "-passout", "pass:secret", "-subj", "/CN=gw-1", "-days", "1",
        ],
        cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    options = fast_options(
        "mqtts://127.0.0.1:1", cert_file=tmp_path / "cert.pem", key_file=tmp_path / "key.pem"
    )
    with pytest.raises(BrokerError, match="is encrypted") as caught:
        build_ssl_context(options)
    assert "mqtt.key_file" in str(caught.value)
