"""Fixtures for the receiver's tests: a ``--db`` value per backend (a SQLite file, or a fresh
schema on one private PostgreSQL cluster per session), receivers storing in it, a way to read
it as the HR backend would, plus the MQTT suite's outbox and delivery-worker fixtures."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.localbroker import LocalMosquitto
from agent.mqtt import MqttOptions
from agent.receiver import PunchStore, Receiver, open_store
from agent.receiver.store import COLUMNS
from tests.mqtt.conftest import collectors, contract, outbox, workers
from tests.support.postgres import LocalPostgres, PostgresUnavailable, import_psycopg
from tests.support.wait import wait_for

# The MQTT suite's fixtures serve these tests too: re-exported, pytest finds them here.
__all__ = [
    "collectors",
    "contract",
    "db",
    "outbox",
    "pg_url",
    "postgres",
    "receivers",
    "workers",
]

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A private PostgreSQL server on 127.0.0.1 for the whole session (about a second to start)."""
    try:
        cluster = LocalPostgres().start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))  # never skipped: scripts/setup.sh installs the server binaries
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(postgres: LocalPostgres) -> str:
    """The URL of a fresh, empty schema on the session's cluster: every connection made with it
    (store, CLI, ``rows``) sees that schema only. A schema takes ~4 ms to create, a database
    ~160 ms, and most tests here run on PostgreSQL."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        psycopg = import_psycopg()
        with psycopg.connect(postgres.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    return f"{postgres.url()}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``--db`` value for an empty database: a SQLite file in tmp_path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "hr.db")
    # Asked for only here, so a run of the SQLite half alone starts no PostgreSQL server.
    url: str = request.getfixturevalue("pg_url")
    return url


def is_postgres(db: str) -> bool:
    return db.startswith("postgresql://")


def rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    """Read the receiver's database over a connection of our own (what the HR backend sees)."""
    if is_postgres(db):
        psycopg = import_psycopg()
        with psycopg.connect(db, connect_timeout=10) as conn:
            return list(conn.execute(sql).fetchall())
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def stored_rows(db: str) -> list[dict[str, Any]]:
    """Every stored punch as {column: value}, in (gateway_id, seq) order."""
    names = [name for name, _ in COLUMNS]
    sql = f"SELECT {', '.join(names)} FROM punches ORDER BY gateway_id, seq"  # noqa: S608
    return [dict(zip(names, row, strict=True)) for row in rows(db, sql)]


def row_of_sent(punch: dict[str, Any], outbox_id: str | None = None) -> dict[str, Any]:
    """A stored row (but ``stored_at``) as the contract's punch says it should be: suspect as
    comma-separated text or NULL, replayed as 0/1, ``outbox_id`` its batch's, every other field
    as sent."""
    row = {name: punch.get(name) for name, _ in COLUMNS if name != "stored_at"}
    row["outbox_id"] = outbox_id
    suspect = punch.get("suspect")
    row["suspect"] = ",".join(suspect) if isinstance(suspect, list) and suspect else None
    row["replayed"] = 1 if punch.get("replayed") else 0
    return row


@pytest.fixture
def receivers(broker: LocalMosquitto, db: str) -> Iterator[Callable[..., Receiver]]:
    """Receivers storing in the test's database (a store of their own each, unless given one);
    stopped, then their stores closed."""
    made: list[Receiver] = []

    def make(
        client_id: str = "receiver-1", store: PunchStore | None = None, validate: bool = False
    ) -> Receiver:
        options = MqttOptions(
            urls=(broker.url,), client_id=client_id, reconnect_min=0.02, reconnect_max=0.2
        )
        store = store or open_store(db)
        receiver = Receiver(options, store, name=client_id, validate=validate).start()
        wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:  # stop first: a store must not close under a running receiver
        receiver.stop(2)
    for receiver in made:
        receiver.store.close()


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish ``messages`` at QoS 1 as a gateway would (again, after a reconnect or timeout)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=5)
            assert info.is_published(), f"the broker did not take {topic} within 5 s"
    finally:
        client.disconnect()
        client.loop_stop()
