"""The receiver's database going away and coming back under a fleet's stream: a PostgreSQL
connection the server ended, a database the receiver cannot write for a while."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing

from agent.localbroker import LocalMosquitto
from agent.mqtt import MqttOptions
from agent.mqtt.contract import encode_batch
from agent.receiver import Receiver, open_store
from agent.receiver.store import PostgresStore
from tests.receiver.conftest import publish
from tests.support.postgres import import_psycopg
from tests.support.wait import wait_for

PREFIX = "punchgate/v1"


def _batch(gateway: str, first: int, count: int) -> tuple[str, bytes]:
    punches = [
        {"id": f"{gateway}-{seq}", "gateway_id": gateway, "seq": seq, "replayed": False}
        for seq in range(first, first + count)
    ]
    return f"{PREFIX}/{gateway}/punches", encode_batch(gateway, punches)


@pytest.fixture
def pg_receiver(broker: LocalMosquitto, pg_url: str) -> Iterator[Receiver]:
    options = MqttOptions(
        urls=(broker.url,), client_id="receiver-pg", reconnect_min=0.02, reconnect_max=0.2
    )
    receiver = Receiver(options, open_store(pg_url), name="receiver-pg").start()
    try:
        wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
        yield receiver
    finally:
        receiver.stop(2)
        receiver.store.close()


def _end_other_sessions(url: str) -> int:
    """What a PostgreSQL restart, a failover or an idle-connection reaper does to the receiver."""
    psycopg = import_psycopg()
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert ended is not None
    return int(ended[0])


def test_the_receiver_stores_again_after_postgresql_ended_its_connection(
    broker: LocalMosquitto, pg_receiver: Receiver, pg_url: str
) -> None:
    publish(broker.port, [_batch("gw-a", 1, 10)])
    wait_for(lambda: pg_receiver.stats.inserted == 10, timeout=10, what="first batch stored")
    assert _end_other_sessions(pg_url) >= 1
    publish(broker.port, [_batch("gw-a", 11, 10), _batch("gw-b", 1, 5)])
    wait_for(lambda: pg_receiver.stats.inserted == 25, timeout=10, what="batches after the cut")
    assert pg_receiver.store.count() == 25
    assert pg_receiver.store.gaps() == []


def test_a_punch_too_large_for_the_postgresql_index_holds_up_no_other_punch(
    broker: LocalMosquitto, pg_receiver: Receiver
) -> None:
    """PostgreSQL refuses an index entry over ~2,700 bytes as a 'program limit' (54000), not a
    data error: that is still the punch's value, and must not hold up the others with it."""
    topic, _ = _batch("gw-b", 1, 1)
    punches = [{"id": f"gw-b-{seq}", "gateway_id": "gw-b", "seq": seq} for seq in range(1, 6)]
    # Incompressible (a repeated letter is compressed into the index entry and fits).
    huge = "".join(hashlib.sha256(bytes([n])).hexdigest() for n in range(100))
    punches.insert(2, {"id": huge, "gateway_id": "gw-b", "seq": 6})
    publish(broker.port, [_batch("gw-a", 1, 10), (topic, encode_batch("gw-b", punches))])
    wait_for(lambda: pg_receiver.stats.inserted == 15, timeout=10, what="the other punches")
    assert pg_receiver.stats.rejected == 1
    assert {(s.gateway_id, s.punches) for s in pg_receiver.store.summary()} == {
        ("gw-a", 10),
        ("gw-b", 5),
    }


class DefaultWindowMosquitto(LocalMosquitto):
    """Mosquitto with its stock window: at most 20 unacknowledged messages out to a client
    (the test broker's is unlimited; EMQX's default is 32, HiveMQ's 10)."""

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a", encoding="utf-8") as config:
            config.write("max_inflight_messages 20\n")


def _sql(url: str, statement: str) -> None:
    psycopg = import_psycopg()
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


DISK_FULL = """
CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
END $$;
CREATE TRIGGER disk_full BEFORE INSERT ON punches EXECUTE FUNCTION disk_full();
"""


def test_the_receiver_takes_every_punch_again_once_its_database_is_back(
    tmp_path: Path, pg_url: str
) -> None:
    """The database is full for a while under a fleet's stream: nothing can be committed, so
    nothing is acknowledged. Once space is freed, the punches that arrived meanwhile and the
    ones sent since are all stored: the unacknowledged messages must not fill the broker's
    window for good (then it sends this receiver nothing more until it is restarted)."""
    broker = DefaultWindowMosquitto(tmp_path / "mosquitto").start()
    # MQTT 3.1.1: the broker applies the same window, and the MQTT 5 CONNACK's Receive Maximum
    # (which a window makes Mosquitto send) is not what this test is about.
    options = MqttOptions(
        urls=(broker.url,),
        client_id="receiver-pg",
        reconnect_min=0.02,
        reconnect_max=0.2,
        protocol="3.1.1",
    )
    receiver = Receiver(options, open_store(pg_url), name="receiver-pg").start()
    try:
        wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
        _sql(pg_url, DISK_FULL)
        broken = (f"{PREFIX}/gw-x/punches", b"{not json")  # rejected once, however often held
        publish(broker.port, [broken] + [_batch(f"gw-{n}", 1, 3) for n in range(25)])
        wait_for(lambda: receiver.stats.messages >= 20, timeout=10, what="20 messages taken")
        _sql(pg_url, "DROP TRIGGER disk_full ON punches")  # space freed
        publish(broker.port, [_batch(f"gw-{n}", 4, 3) for n in range(25)])
        wait_for(lambda: receiver.store.count() == 150, timeout=20, what="every punch stored")
        assert receiver.store.gaps() == []
        assert receiver.stats.inserted == 150
        assert receiver.stats.messages == 51 and receiver.stats.rejected == 1
    finally:
        receiver.stop(2)
        receiver.store.close()
        broker.stop()


def test_a_message_nested_too_deep_for_json_is_rejected_and_holds_up_no_other_gateway(
    broker: LocalMosquitto, pg_receiver: Receiver
) -> None:
    """``[[[[...`` 100,000 deep is what a fuzzer or a broken client sends; json.loads raises
    RecursionError, not ValueError, and it took every gateway's batch handled with it."""
    deep = (f"{PREFIX}/gw-x/punches", b"[" * 100_000 + b"]" * 100_000)
    publish(broker.port, [deep, _batch("gw-a", 1, 10), deep, _batch("gw-b", 1, 5)])
    wait_for(lambda: pg_receiver.stats.inserted == 15, timeout=10, what="the other batches")
    wait_for(lambda: pg_receiver.stats.rejected == 2, timeout=5, what="both deep ones rejected")


def _locked(url: str) -> Any:
    """A backend session holding the punches table (a migration, a long report's lock)."""
    psycopg = import_psycopg()
    conn = psycopg.connect(url, connect_timeout=10)
    conn.execute("LOCK TABLE punches IN ACCESS EXCLUSIVE MODE")
    return conn


def test_stopping_the_receiver_while_postgresql_blocks_its_insert_ends_in_bounded_time(
    broker: LocalMosquitto, pg_url: str
) -> None:
    """SIGTERM while a lock holds the insert: the store's close waited for the statement,
    which waited for the lock, so the receiver never exited (systemd had to kill it)."""
    options = MqttOptions(urls=(broker.url,), client_id="receiver-pg", reconnect_min=0.02)
    receiver = Receiver(options, open_store(pg_url), name="receiver-pg").start()
    wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
    lock = _locked(pg_url)
    try:
        publish(broker.port, [_batch("gw-a", 1, 3)])
        wait_for(lambda: receiver.stats.messages == 1, timeout=5, what="the batch taken")
        closing = threading.Thread(target=lambda: (receiver.stop(1), receiver.store.close()))
        closing.start()
        closing.join(8)
        assert not closing.is_alive(), "the receiver did not stop while its insert was blocked"
    finally:
        lock.rollback()
        lock.close()
        closing.join(5)


def test_an_insert_blocked_by_a_lock_fails_after_the_lock_timeout_and_is_stored_later(
    broker: LocalMosquitto, pg_url: str
) -> None:
    """Blocked without a limit, the receiver stored nothing and said nothing; with a lock
    timeout it says why, holds the batch and stores it once the lock is gone."""
    options = MqttOptions(urls=(broker.url,), client_id="receiver-pg", reconnect_min=0.02)
    store = PostgresStore(pg_url, lock_timeout=0.3)
    receiver = Receiver(options, store, name="receiver-pg").start()
    try:
        wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
        lock = _locked(pg_url)
        try:
            with structlog.testing.capture_logs() as logs:
                publish(broker.port, [_batch("gw-a", 1, 3)])
                wait_for(
                    lambda: any("lock timeout" in str(e.get("error")) for e in logs),
                    timeout=5,
                    what="the lock timeout logged",
                )
        finally:
            lock.rollback()
            lock.close()
        wait_for(lambda: receiver.store.count() == 3, timeout=10, what="the batch stored")
    finally:
        receiver.stop(2)
        store.close()


def test_a_batch_on_a_topic_without_a_gateway_is_rejected_and_holds_up_no_other_gateway(
    broker: LocalMosquitto, pg_receiver: Receiver
) -> None:
    """``punchgate/v1//punches`` matches the subscription's ``+``; its punches, without a
    gateway_id, 'matched' the missing gateway and broke the store of every gateway's batch
    handled with them (a KeyError, not a store error)."""
    nobody = [{"id": "x-1", "seq": 1}]
    publish(broker.port, [(f"{PREFIX}//punches", encode_batch("", nobody)), _batch("gw-a", 1, 5)])
    wait_for(lambda: pg_receiver.stats.inserted == 5, timeout=10, what="gw-a's batch stored")
    wait_for(lambda: pg_receiver.stats.rejected == 1, timeout=5, what="the batch rejected")


def test_a_punch_whose_suspect_flags_are_not_text_is_refused_alone(
    broker: LocalMosquitto, receivers: Callable[..., Receiver]
) -> None:
    """``"suspect": [1]`` broke the row conversion with a TypeError before the database saw
    anything: every punch of every gateway handled with it failed, on every re-send."""
    receiver = receivers()
    punches = [{"id": f"gw-b-{seq}", "gateway_id": "gw-b", "seq": seq} for seq in range(1, 5)]
    punches[1]["suspect"] = [1, ["x"]]
    topic = f"{PREFIX}/gw-b/punches"
    publish(broker.port, [(topic, encode_batch("gw-b", punches)), _batch("gw-a", 1, 5)])
    wait_for(lambda: receiver.stats.inserted == 8, timeout=10, what="the other punches")
    wait_for(lambda: receiver.stats.rejected == 1, timeout=5, what="the odd punch refused")
    assert [(g.gateway_id, g.first_missing) for g in receiver.store.gaps()] == [("gw-b", 2)]
