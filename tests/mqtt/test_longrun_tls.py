"""Months on one gateway: TLS files renewed in place must be used without a restart."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog

from agent.localbroker import BrokerTls, LocalMosquitto, free_port
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, fast_options, make_punches
from tests.mqtt.test_connection import _make_ca, _make_leaf

SERVER_EXT = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The old plant CA and the new one, each with a server certificate for 127.0.0.1."""
    cwd = tmp_path_factory.mktemp("rotation-pki")
    for ca in ("old-ca", "new-ca"):
        _make_ca(cwd, ca)
        _make_leaf(cwd, f"server-{ca}", ca, SERVER_EXT)
    return cwd


class Site:
    """A TLS broker whose certificate comes from one of two CAs, and a gateway trusting a file."""

    def __init__(self, pki: Path, workdir: Path) -> None:
        self.pki = pki
        self.workdir = workdir
        self.port = free_port()
        self.bundle = workdir / "plant-ca.pem"  # what mqtt.ca_file names
        shutil.copyfile(pki / "old-ca.crt", self.bundle)
        self.broker = self._broker("old-ca")

    def _broker(self, ca: str) -> LocalMosquitto:
        tls = BrokerTls(
            self.pki / f"{ca}.crt", self.pki / f"server-{ca}.crt", self.pki / f"server-{ca}.key"
        )
        return LocalMosquitto(self.workdir / "broker", port=self.port, tls=tls).start()

    def restart_broker(self, ca: str) -> None:
        self.broker.stop()
        self.broker = self._broker(ca)


@contextmanager
def site_with_gateway(
    pki: Path, workdir: Path, outbox: Outbox
) -> Iterator[tuple[Site, DeliveryWorker]]:
    site = Site(pki, workdir)
    worker: DeliveryWorker | None = None
    try:
        options = fast_options(site.broker.url, ca_file=site.bundle)
        worker = DeliveryWorker(options, outbox, GATEWAY).start()
        worker.connection.wait_connected(10)
        yield site, worker
    finally:
        if worker is not None:
            worker.stop(2)
        site.broker.stop()


def test_a_ca_file_replaced_in_place_is_used_when_the_broker_moves_to_the_new_ca(
    tmp_path: Path, two_cas: Path, outbox: Outbox
) -> None:
    # The plant's broker certificate is re-issued by a new CA. The technician copies the new
    # CA over the file mqtt.ca_file names (the config itself does not change), as the broker
    # restarts with its new certificate: the gateway must trust the file as it is now.
    with site_with_gateway(two_cas, tmp_path, outbox) as (site, worker):
        shutil.copyfile(two_cas / "new-ca.crt", site.bundle)
        site.restart_broker("new-ca")
        outbox.add_punches(make_punches(3))
        worker.wake()
        assert worker.flush(10), (
            f"still not delivering with the renewed CA file: {worker.status().last_error}"
        )


def test_a_half_copied_ca_file_keeps_the_loaded_ca_and_is_reported_once(
    tmp_path: Path, two_cas: Path, outbox: Outbox
) -> None:
    with (
        site_with_gateway(two_cas, tmp_path, outbox) as (site, worker),
        structlog.testing.capture_logs() as logs,
    ):
        site.bundle.write_bytes((two_cas / "new-ca.crt").read_bytes()[:100])  # copy interrupted
        site.restart_broker("old-ca")
        outbox.add_punches(make_punches(3))
        worker.wake()
        assert worker.flush(10), worker.status().last_error
    told = [e for e in logs if e["event"] == "tls files changed"]
    assert len(told) == 1, told
    assert "mqtt.ca_file" in told[0]["outcome"] and "loaded before" in told[0]["outcome"]
