"""TLS to the broker verifies by default; ``tls_insecure`` skips the host name check only."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.localbroker import BrokerTls, LocalMosquitto
from agent.mqtt import DeliveryWorker, MqttOptions
from buffer.outbox import Outbox
from config.errors import BrokerError
from tests.support.wait import wait_for

GATEWAY = "gw-tls"


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _ca(cwd: Path, name: str) -> None:
    _openssl(
        cwd, "req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-days", "2", "-subj", f"/CN=punchgate security {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _leaf(cwd: Path, name: str, ca: str, san: str) -> None:
    _openssl(cwd, "req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=x")
    (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


@dataclass(frozen=True)
class Certs:
    dir: Path

    def tls(self, leaf: str, ca: str = "ca") -> BrokerTls:
        return BrokerTls(self.dir / f"{ca}.crt", self.dir / f"{leaf}.crt", self.dir / f"{leaf}.key")

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA we trust, one we do not, and broker certificates: for 127.0.0.1 by each, and one
    by the trusted CA for another name (a broker reached by IP whose certificate says DNS)."""
    cwd = tmp_path_factory.mktemp("tls-pki")
    _ca(cwd, "ca")
    _ca(cwd, "rogue-ca")
    _leaf(cwd, "right-name", "ca", "IP:127.0.0.1")
    _leaf(cwd, "wrong-name", "ca", "DNS:broker.plant.example")
    _leaf(cwd, "rogue", "rogue-ca", "IP:127.0.0.1")
    return Certs(cwd)


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[[BrokerTls], LocalMosquitto]]:
    started: list[LocalMosquitto] = []

    def start(tls: BrokerTls) -> LocalMosquitto:
        broker = LocalMosquitto(tmp_path / f"broker-{len(started)}", tls=tls).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@dataclass
class Gateway:
    """Starts delivery workers with these TLS options, as the daemon does; stops them all."""

    outbox: Outbox
    workers: list[DeliveryWorker]

    def start(self, url: str, **changes: object) -> DeliveryWorker:
        options = MqttOptions(
            urls=(url,),
            client_id=f"punchgate-{GATEWAY}-{len(self.workers)}",
            connect_timeout=3,
            reconnect_min=0.05,
            reconnect_max=0.2,
            status_interval=3600,
        ).with_(**changes)
        worker = DeliveryWorker(options, self.outbox, GATEWAY)
        self.workers.append(worker.start())
        return worker

    def connects(self, url: str, **changes: object) -> None:
        self.start(url, **changes).connection.wait_connected(10)

    def refusal(self, url: str, **changes: object) -> str:
        """Why the connection was refused (the first attempt's error: known in milliseconds)."""
        try:
            connection = self.start(url, **changes).connection
        except BrokerError as exc:
            return str(exc)
        status = wait_for(
            lambda: (s := connection.status()).last_error or (s.connected and s),
            timeout=10,
            what="the first connection attempt",
        )
        assert isinstance(status, str), "connected, where a refusal was expected"
        return status


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    made = Gateway(Outbox.open(tmp_path / "outbox.db", GATEWAY), [])
    yield made
    for worker in made.workers:
        worker.stop(timeout=1)
    made.outbox.close()


def test_tls_insecure_still_refuses_a_broker_certificate_from_an_unknown_ca(
    certs: Certs, brokers: Callable[[BrokerTls], LocalMosquitto], gateway: Gateway
) -> None:
    """A lab setting for a broker reached by another name must not let an impostor in."""
    rogue = brokers(certs.tls("rogue", ca="rogue-ca"))
    why = gateway.refusal(rogue.url, ca_file=certs.ca, tls_insecure=True)
    assert "certificate verification failed" in why


def test_tls_insecure_skips_only_the_host_name_check(
    certs: Certs, brokers: Callable[[BrokerTls], LocalMosquitto], gateway: Gateway
) -> None:
    broker = brokers(certs.tls("wrong-name"))
    # The default checks the name.
    assert "certificate verification failed" in gateway.refusal(broker.url, ca_file=certs.ca)
    gateway.connects(broker.url, ca_file=certs.ca, tls_insecure=True)


def test_mqtts_without_a_ca_file_trusts_only_the_system_store(
    certs: Certs, brokers: Callable[[BrokerTls], LocalMosquitto], gateway: Gateway
) -> None:
    """No ca_file is no 'accept anything': a private CA's broker is refused until it is given."""
    broker = brokers(certs.tls("right-name"))
    assert "certificate verification failed" in gateway.refusal(broker.url)
    gateway.connects(broker.url, ca_file=certs.ca)


def test_a_ca_file_that_is_a_directory_is_refused_naming_the_setting(
    certs: Certs, brokers: Callable[[BrokerTls], LocalMosquitto], gateway: Gateway
) -> None:
    """/etc/ssl/certs is a directory of CAs (OpenSSL's capath): not silently trusted as one."""
    broker = brokers(certs.tls("right-name"))
    assert "mqtt.ca_file" in gateway.refusal(broker.url, ca_file=certs.dir)
