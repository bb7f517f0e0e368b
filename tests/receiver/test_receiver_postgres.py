"""The reference receiver with its PostgreSQL store, against a real server and a real broker."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from agent.cli import app
from agent.localbroker import LocalMosquitto, free_port
from agent.mqtt import Contract, DeliveryWorker
from agent.mqtt.options import MqttOptions
from agent.receiver import Receiver, open_store
from agent.receiver.store import COLUMNS, PostgresStore, StoreError
from buffer.outbox import Outbox
from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod
from tests.mqtt.conftest import GATEWAY, PREFIX, assert_contract, fast_options, make_punches
from tests.support.mqtt import Collector
from tests.support.postgres import LocalPostgres, import_psycopg
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]
ROOT = Path(__file__).resolve().parents[2]
# Columns the receiver fills from the punch as published (the rest: stored_at, replayed, suspect).
PUNCH_COLUMNS = [name for name, _ in COLUMNS if name not in ("stored_at", "replayed", "suspect")]


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the receiver's database over a connection of our own (what the HR backend sees)."""
    psycopg = import_psycopg()
    with psycopg.connect(url, connect_timeout=10) as conn:
        return list(conn.execute(sql, params).fetchall())


@pytest.fixture
def receivers(broker: LocalMosquitto, pg_url: str) -> Iterator[Callable[..., Receiver]]:
    """Receivers storing in the test's database; stopped, then their stores closed."""
    made: list[Receiver] = []

    def make(client_id: str = "receiver-pg") -> Receiver:
        options = MqttOptions(
            urls=(broker.url,), client_id=client_id, reconnect_min=0.02, reconnect_max=0.2
        )
        receiver = Receiver(options, PostgresStore(pg_url), name=client_id).start()
        wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:  # stop first: a store must not close under a running receiver
        receiver.stop(2)
    for receiver in made:
        receiver.store.close()


def test_backend_ack_mode_stores_every_punch_exactly_once_in_postgresql_across_a_broker_restart(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    receivers: Callable[..., Receiver],
    pg_url: str,
    contract: Contract,
) -> None:
    acks = Collector(broker.url, [f"{PREFIX}/+/ack"]).start()
    try:
        receiver = receivers()
        store = receiver.store
        outbox.add_punches(make_punches(3000))
        worker = workers(
            fast_options(broker.url, ack="backend", batch_size=50, ack_timeout=2), outbox
        )
        wait_for(lambda: store.count() >= 500, timeout=10, what="first 500 stored in PostgreSQL")
        broker.restart()
        outbox.add_punches(make_punches(1000, start=3000))
        worker.wake()
        assert worker.flush(20), worker.status()
        assert outbox.stats().pending == 0
        total, distinct, low, high = rows(
            pg_url, "SELECT count(*), count(DISTINCT id), min(seq), max(seq) FROM punches"
        )[0]
        assert (total, distinct, low, high) == (4000, 4000, 1, 4000)
        stored = {r[0] for r in rows(pg_url, "SELECT id FROM punches")}
        assert stored == {p.id for p in outbox.list(limit=10_000)}
        assert store.gaps() == []
        assert receiver.stats.rejected == 0
        assert receiver.stats.inserted == 4000
        assert assert_contract(contract, acks.messages) > 0
    finally:
        acks.stop()


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish ``messages`` at QoS 1 as a gateway would (again, after a reconnect or timeout)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        for topic, payload in messages:
            assert client.publish(topic, payload, qos=1).wait_for_publish(timeout=5) is None
    finally:
        client.disconnect()
        client.loop_stop()


def _odd_punches() -> list[Punch]:
    """A suspect punch with an impossible time and one from an unmapped card: NULLs in columns."""
    when = datetime(2024, 5, 1, 9, 30)
    return [
        Punch(
            device_id="dev-1",
            device_serial="SER-dev-1",
            employee="4711",
            device_time=when,
            time_utc=None,
            utc_offset_minutes=None,
            state=PunchState.UNKNOWN,
            state_code=None,
            verify=VerifyMethod.OTHER,
            verify_code=None,
            suspect=frozenset({Suspect.TIME_INVALID, Suspect.UNKNOWN_STATE}),
            raw=b'\x00\xff{"},\\',
        ),
        Punch(
            device_id="dev-1",
            device_serial="SER-dev-1",
            employee=None,
            device_time=when,
            time_utc=datetime(2024, 5, 1, 7, 30, tzinfo=UTC),
            utc_offset_minutes=120,
            state=PunchState.IN,
            state_code=0,
            verify=VerifyMethod.CARD,
            verify_code=4,
            source=Source.LIVE,
            card='Zoë "{42}", \\x',
            suspect=frozenset({Suspect.UNKNOWN_CARD}),
        ),
    ]


def test_redelivered_batches_are_ignored_and_the_first_stored_copy_of_each_punch_kept(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    receivers: Callable[..., Receiver],
    pg_url: str,
    collectors: Callable[..., Collector],
) -> None:
    published = collectors([f"{PREFIX}/+/punches"])
    receiver = receivers()
    outbox.add_punches(make_punches(400))
    outbox.add_punches(_odd_punches(), device_id="dev-1")
    manual = Punch(
        device_id="dev-1",
        device_serial="SER-dev-1",
        employee="1234",
        device_time=datetime(2024, 5, 1, 17, 0),
        time_utc=datetime(2024, 5, 1, 15, 0, tzinfo=UTC),
        utc_offset_minutes=120,
        state=PunchState.OUT,
        verify=VerifyMethod.MANUAL,
        source=Source.MANUAL,
    )
    outbox.add_manual(manual, operator="tech O'Brien", reason="forgot to punch out; {sic}")
    worker = workers(fast_options(broker.url, ack="backend", batch_size=40), outbox)
    assert worker.flush(15), worker.status()
    batches = published.wait(
        lambda ms: len({p["id"] for m in ms for p in m.json()["punches"]}) >= 403,
        what="a copy of every published batch",
    )
    sent = [p for m in batches for p in m.json()["punches"]]
    assert receiver.stats.inserted == 403

    again = []
    for message in batches:
        body = message.json()
        for punch in body["punches"]:
            punch["replayed"] = True
        again.append((message.topic, json.dumps(body).encode()))
    _publish(broker.port, again)
    wait_for(lambda: receiver.stats.duplicates >= len(sent), timeout=10, what="the re-deliveries")

    assert receiver.stats.inserted == 403 and receiver.stats.rejected == 0
    assert rows(pg_url, "SELECT count(*), sum(replayed) FROM punches")[0] == (403, 0)
    names = ", ".join(PUNCH_COLUMNS)
    stored = {r[0]: r for r in rows(pg_url, f"SELECT {names} FROM punches")}  # noqa: S608
    for punch in sent:  # every field arrives in PostgreSQL as published, NULLs included
        assert stored[punch["id"]] == tuple(punch[name] for name in PUNCH_COLUMNS)
    suspects = {r[0] for r in rows(pg_url, "SELECT suspect FROM punches") if r[0]}
    assert suspects == {"time_invalid,unknown_state", "unknown_card"}
    corrected = rows(pg_url, "SELECT operator, reason FROM punches WHERE source = 'manual'")
    assert corrected == [("tech O'Brien", "forgot to punch out; {sic}")]


def _punch(gateway: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"{gateway}-{seq}", "gateway_id": gateway, "seq": seq, **fields}


def test_receiver_keeps_storing_when_an_ack_fails_as_the_connection_drops(
    broker: LocalMosquitto,
    receivers: Callable[..., Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receivers()
    acknowledge = receiver.connection.ack
    failed: list[int] = []

    def ack_racing_a_reconnect(generation: int, mid: int, qos: int) -> None:
        # What paho raises when its network thread closes the socket pair under this call (seen
        # on broker restarts with this slower store): the receiver's store thread must survive.
        if not failed:
            failed.append(mid)
            raise OSError(errno.EBADF, "Bad file descriptor")
        acknowledge(generation, mid, qos)

    monkeypatch.setattr(receiver.connection, "ack", ack_racing_a_reconnect)
    topic = f"{PREFIX}/{GATEWAY}/punches"

    def batch(*seqs: int) -> tuple[str, bytes]:
        body = {"gateway_id": GATEWAY, "punches": [_punch(GATEWAY, s) for s in seqs]}
        return topic, json.dumps(body).encode()

    _publish(broker.port, [batch(1, 2)])
    wait_for(lambda: receiver.store.count() == 2, timeout=5, what="the first batch")
    _publish(broker.port, [batch(3)])
    wait_for(lambda: receiver.store.count() == 3, timeout=5, what="a batch after the failed ack")
    assert failed, "the ack never failed: the test did not exercise the failure"
    broker.restart()  # the broker re-sends the message whose ack failed; the store ignores it
    wait_for(lambda: receiver.stats.duplicates >= 2, timeout=10, what="the re-sent first batch")
    assert receiver.store.count() == 3 and receiver.store.gaps() == []


def test_postgres_store_inserts_new_ids_once_even_when_a_batch_repeats_one(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        assert isinstance(store, PostgresStore)
        big = 2**40  # seq is BIGINT: a gateway's sequence outlives 32 bits
        assert store.store([_punch("gw-a", 1, utc_offset_minutes=-330), _punch("gw-a", 2)]) == 2
        batch = [_punch("gw-a", 2), _punch("gw-a", 3), _punch("gw-a", 3), _punch("gw-a", big)]
        assert store.store(batch) == 2
        assert store.store([]) == 0
        assert store.count() == 4
        assert store.ids() == ["gw-a-1", "gw-a-2", "gw-a-3", f"gw-a-{big}"]
        assert rows(pg_url, "SELECT utc_offset_minutes FROM punches WHERE seq = 1") == [(-330,)]
    finally:
        store.close()


def test_gaps_in_postgresql_are_reported_per_gateway_by_the_store_and_the_cli(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url)
    try:
        assert store.store([_punch("gw-a", s) for s in (1, 2, 5, 6, 9)]) == 5
        assert store.store([_punch("gw-b", s) for s in (3, 4)] + [_punch("gw-a", 1)]) == 2
        gaps = [(g.gateway_id, g.first_missing, g.last_missing) for g in store.gaps()]
        assert gaps == [("gw-a", 3, 4), ("gw-a", 7, 8), ("gw-b", 1, 2)]
        assert [(g.gateway_id, g.first_missing) for g in store.gaps("gw-b")] == [("gw-b", 1)]
        summary = {s.gateway_id: (s.punches, s.last_seq, s.missing) for s in store.summary()}
        assert summary == {"gw-a": (5, 9, 4), "gw-b": (2, 4, 2)}
    finally:
        store.close()
    result = CliRunner().invoke(app, ["receive", "--db", pg_url, "--gaps"])
    assert result.exit_code == 0, result.output
    assert "gw-a is missing seq 7-8 (2)" in result.output
    result = CliRunner().invoke(app, ["receive", "--db", pg_url, "--gaps", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    expected = {"gateway_id": "gw-b", "first_missing": 1, "last_missing": 2, "count": 2}
    assert {**expected, "missing": 2, "recovery_jump": False} in data["gaps"]
    assert {g["gateway_id"]: g["missing"] for g in data["gateways"]} == {"gw-a": 4, "gw-b": 2}


def test_postgres_store_says_which_server_or_database_it_cannot_open(
    postgres: LocalPostgres, pg_url: str
) -> None:
    closed = free_port()
    with pytest.raises(StoreError, match="cannot open the receiver database"):
        open_store(f"postgresql://postgres@127.0.0.1:{closed}/hr?connect_timeout=2")
    with pytest.raises(StoreError, match="no_such_db"):
        open_store(postgres.url("no_such_db"))


def test_punchgate_receive_command_stores_in_postgresql_until_sigterm(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, pg_url: str
) -> None:
    punchgate = Path(sys.executable).with_name("punchgate")
    assert punchgate.exists(), f"{punchgate} missing: run bash scripts/setup.sh"
    proc = subprocess.Popen(
        [
            str(punchgate),
            "--log-level",
            "warning",
            "receive",
            "--url",
            broker.url,
            "--db",
            pg_url,
            "--client-id",
            "cli-receiver-pg",
            "--validate",
            "--duration",
            "60",
            "--report-interval",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(b"receiving $share/punchgate/punchgate/v1/+/"), first
        outbox.add_punches(make_punches(300))
        worker = workers(fast_options(broker.url, ack="backend", ack_timeout=1), outbox)
        assert worker.flush(15), "the CLI receiver did not acknowledge the punches"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        assert b"'inserted': 300" in out
        assert f"{GATEWAY}".encode() in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert rows(pg_url, "SELECT count(DISTINCT id), min(seq), max(seq) FROM punches") == [
        (300, 1, 300)
    ]
