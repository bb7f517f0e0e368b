"""A fleet at the receiver: 20 gateways' real outboxes and delivery workers publishing at once
to two receivers sharing one subscription, one of them SIGKILLed mid-stream and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import PREFIX, fast_options, make_punches
from tests.receiver.conftest import rows
from tests.support.mqtt import Collector
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
PUNCHGATE = Path(sys.executable).with_name("punchgate")
GATEWAYS = [f"gw-{n:02d}" for n in range(20)]
PER_GATEWAY = 100


class Fleet:
    """One outbox and one delivery worker (backend acks) per gateway."""

    def __init__(self, broker: LocalMosquitto, root: Path) -> None:
        self.outboxes = {gw: Outbox.open(root / gw / "outbox.db", gw) for gw in GATEWAYS}
        self.workers: list[DeliveryWorker] = []
        self.broker = broker

    def start(self) -> None:
        for gw, outbox in self.outboxes.items():
            outbox.add_punches(make_punches(PER_GATEWAY, device=f"{gw}-dev"))
            options = fast_options(
                self.broker.url,
                client_id=f"punchgate-{gw}",
                ack="backend",
                ack_timeout=1,
                batch_size=25,
            )
            self.workers.append(DeliveryWorker(options, outbox, gw, site=gw).start())

    def ids(self) -> set[str]:
        return {p.id for box in self.outboxes.values() for p in box.list(limit=10_000)}

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=1)
        for outbox in self.outboxes.values():
            outbox.close()


@pytest.fixture
def fleet(broker: LocalMosquitto, tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(broker, tmp_path / "gateways")
    try:
        yield made
    finally:
        made.close()


def _receiver(broker: LocalMosquitto, db: str, client_id: str) -> subprocess.Popen[bytes]:
    argv = [str(PUNCHGATE), "--log-level", "warning", "receive", "--url", broker.url]
    argv += ["--db", db, "--client-id", client_id, "--duration", "60"]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    assert banner.startswith(b"receiving "), banner
    return proc


def test_twenty_gateways_two_receivers_one_killed_mid_stream_every_punch_once(
    broker: LocalMosquitto, fleet: Fleet, tmp_path: Path
) -> None:
    """SQLite only (two receiver processes share the file): the store's backends are compared
    in test_receiver.py; this one is about the broker, the processes and the acks."""
    db = str(tmp_path / "hr.db")
    acks = Collector(broker.url, [f"{PREFIX}/+/ack"]).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        a = _receiver(broker, db, "receiver-a")
        procs += [a, _receiver(broker, db, "receiver-b")]
        fleet.start()
        total = len(GATEWAYS) * PER_GATEWAY
        wait_for(
            lambda: rows(db, "SELECT count(*) FROM punches")[0][0] >= total // 4,
            timeout=15,
            what="a quarter stored",
        )
        a.send_signal(signal.SIGKILL)  # mid-stream: between, or in, its commits
        a.wait(timeout=5)
        stored = {r[0] for r in rows(db, "SELECT id FROM punches")}
        acked_by_a = {
            i
            for m in acks.messages
            if m.json().get("receiver") == "receiver-a"
            for i in m.json()["ids"]
        }
        assert acked_by_a and acked_by_a <= stored, "receiver-a acked punches it had not stored"
        procs.append(_receiver(broker, db, "receiver-a"))  # systemd restarts it
        for worker in fleet.workers:
            assert worker.flush(30), worker.status()
        assert rows(db, "SELECT count(*), count(DISTINCT id) FROM punches") == [(total, total)]
        assert {r[0] for r in rows(db, "SELECT id FROM punches")} == fleet.ids()
        for outbox in fleet.outboxes.values():
            assert outbox.stats().pending == 0
        assert rows(db, "SELECT count(DISTINCT gateway_id) FROM punches") == [(len(GATEWAYS),)]
    finally:
        acks.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate(timeout=5)
