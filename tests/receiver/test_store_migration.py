"""A receiver database made before seqs were tracked per outbox_id is brought up to date when
opened: nothing lost, safe to run again, all or nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agent.localbroker import LocalMosquitto
from agent.receiver import Gap, Receiver, open_store
from agent.receiver.store import COLUMNS, StoreError
from tests.mqtt.conftest import GATEWAY, PREFIX
from tests.receiver.conftest import is_postgres, publish, rows
from tests.receiver.test_fleet_privileges import _least_privilege_url
from tests.support.postgres import LocalPostgres, import_psycopg
from tests.support.wait import wait_for

NEW = "fedcba9876543210"
_OLD_TYPES = {
    "sqlite": {"text": "TEXT", "int": "INTEGER", "bigint": "INTEGER"},
    "postgresql": {"text": "TEXT", "int": "INTEGER", "bigint": "BIGINT"},
}
_OLD_NAMES = [name for name, _ in COLUMNS if name != "outbox_id"]


def _old_schema(db: str) -> list[str]:
    """The receiver's tables as the releases before outbox_id made them."""
    types = _OLD_TYPES["postgresql" if is_postgres(db) else "sqlite"]
    columns = ", ".join(
        f"{name} {types[kind]}"
        + (" PRIMARY KEY" if name == "id" else "")
        + (" NOT NULL" if name in ("gateway_id", "seq", "replayed", "stored_at") else "")
        for name, kind in COLUMNS
        if name != "outbox_id"
    )
    return [
        f"CREATE TABLE punches ({columns})",
        "CREATE INDEX punches_gateway_seq ON punches(gateway_id, seq)",
        "CREATE TABLE seq_copies (gateway_id TEXT NOT NULL, seq BIGINT NOT NULL,"
        " id TEXT NOT NULL, PRIMARY KEY (gateway_id, seq))",
    ]


def _old_row(gateway: str, seq: int) -> tuple[Any, ...]:
    values = {"id": f"{gateway}-{seq}", "gateway_id": gateway, "seq": seq, "replayed": 0}
    values |= {"employee": "1001", "stored_at": "2026-11-01T08:00:00.000+00:00"}
    return tuple(values.get(name) for name in _OLD_NAMES)


def _execute(db: str, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run ``statements`` (SQL with ``?`` marks, parameters) in one transaction of our own."""
    if is_postgres(db):
        psycopg = import_psycopg()
        with psycopg.connect(db, connect_timeout=10) as conn:
            for sql, params in statements:
                conn.execute(sql.replace("?", "%s"), params)
        return
    conn = sqlite3.connect(db, timeout=10)
    try:
        with conn:
            for sql, params in statements:
                conn.execute(sql, params)
    finally:
        conn.close()


def _make_old_database(db: str, *extra: str) -> None:
    """An old receiver's database: gw-1 seq 1, 2, 5 stored, 3 a copy (4 missing); gw-2 seq 1."""
    marks = ", ".join("?" for _ in _OLD_NAMES)
    insert = f"INSERT INTO punches ({', '.join(_OLD_NAMES)}) VALUES ({marks})"  # noqa: S608
    statements: list[tuple[str, tuple[Any, ...]]] = [(s, ()) for s in _old_schema(db)]
    statements += [(s, ()) for s in extra]
    statements += [(insert, _old_row(g, s)) for g, s in [(GATEWAY, 1), (GATEWAY, 2), (GATEWAY, 5)]]
    statements += [(insert, _old_row("gw-2", 1))]
    statements += [
        (
            "INSERT INTO seq_copies (gateway_id, seq, id) VALUES (?, ?, ?)",
            (GATEWAY, 3, f"{GATEWAY}-1"),
        )
    ]
    _execute(db, statements)


_OLD_SELECT = f"SELECT {', '.join(_OLD_NAMES)} FROM punches ORDER BY id"  # noqa: S608


def _gaps(db: str) -> list[tuple[Any, ...]]:
    store = open_store(db)
    try:
        return [(g.gateway_id, g.outbox_id, g.first_missing, g.last_missing) for g in store.gaps()]
    finally:
        store.close()


def _has_outbox_id(db: str, table: str) -> bool:
    if is_postgres(db):
        sql = (
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = %s AND column_name = 'outbox_id'"
        )
        psycopg = import_psycopg()
        with psycopg.connect(db, connect_timeout=10) as conn:
            return conn.execute(sql, (table,)).fetchall() == [(1,)]
    return "outbox_id" in {r[1] for r in rows(db, f"PRAGMA table_info({table})")}


def test_an_old_receiver_database_is_migrated_losing_nothing_and_opens_again_unchanged(
    broker: LocalMosquitto, receivers: Callable[..., Receiver], db: str
) -> None:
    """The backend updates its receiver: the punches and the copies' numbers it held count in
    each gateway's numbering without an outbox_id, as before; a re-installed gateway's new
    numbering then starts apart from them."""
    _make_old_database(db)
    before = rows(db, _OLD_SELECT)
    assert _gaps(db) == [(GATEWAY, None, 4, 4)]  # migrates, then reports as the old one did
    assert _gaps(db) == [(GATEWAY, None, 4, 4)]  # a second run finds nothing to do
    assert rows(db, _OLD_SELECT) == before
    assert rows(db, "SELECT count(*) FROM punches WHERE outbox_id IS NULL") == [(4,)]
    assert rows(db, "SELECT gateway_id, outbox_id, seq, id FROM seq_copies") == [
        (GATEWAY, "", 3, f"{GATEWAY}-1")
    ]
    receiver = receivers()
    punches = [{"id": f"new-{s}", "gateway_id": GATEWAY, "seq": s} for s in (1, 2, 4)]
    body = {"gateway_id": GATEWAY, "outbox_id": NEW, "punches": punches}
    publish(broker.port, [(f"{PREFIX}/{GATEWAY}/punches", json.dumps(body).encode())])
    wait_for(lambda: receiver.store.count() == 7, timeout=10, what="the new numbering stored")
    assert sorted(rows(db, "SELECT seq FROM punches WHERE outbox_id = 'fedcba9876543210'")) == [
        (1,),
        (2,),
        (4,),
    ]
    gaps = [(g.gateway_id, g.outbox_id, g.first_missing) for g in receiver.store.gaps()]
    assert gaps == [(GATEWAY, None, 4), (GATEWAY, NEW, 3)]


def test_a_migration_cut_short_leaves_the_old_database_whole(db: str) -> None:
    """A migration that fails half-way (here: a leftover object in the way of its last step;
    a power cut is the same to a transaction) changes nothing: the next start tries again."""
    if is_postgres(db):
        # A table of the backend's own whose foreign key holds on to the old key of seq_copies.
        extra = (
            "CREATE TABLE other (g TEXT, s BIGINT,"
            " FOREIGN KEY (g, s) REFERENCES seq_copies (gateway_id, seq))",
        )
        _make_old_database(db, *extra)
        obstacle = "DROP TABLE other"
    else:
        _make_old_database(db, "CREATE VIEW seq_copies_migrating AS SELECT 1")
        obstacle = "DROP VIEW seq_copies_migrating"
    before = rows(db, _OLD_SELECT)
    with pytest.raises(StoreError, match="cannot bring the receiver database up to date"):
        open_store(db)
    assert not _has_outbox_id(db, "punches") and not _has_outbox_id(db, "seq_copies")
    assert rows(db, _OLD_SELECT) == before
    assert rows(db, "SELECT gateway_id, seq, id FROM seq_copies") == [(GATEWAY, 3, f"{GATEWAY}-1")]
    _execute(db, [(obstacle, ())])
    assert _gaps(db) == [(GATEWAY, None, 4, 4)]
    assert _has_outbox_id(db, "punches") and _has_outbox_id(db, "seq_copies")


def test_two_receivers_starting_together_on_an_old_database_migrate_it_once(db: str) -> None:
    """Two receivers of one group, updated and restarted together: one migrates, the other
    waits for it and finds nothing left to do; neither fails, nothing is copied twice."""
    _make_old_database(db)
    opened: list[Any] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(open_store(db))
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert not errors and len(opened) == 2, errors
        assert [store.gaps() for store in opened] == [[Gap(GATEWAY, 4, 4)]] * 2
        assert rows(db, "SELECT count(*) FROM seq_copies") == [(1,)]
        assert rows(db, "SELECT count(*) FROM punches WHERE outbox_id IS NULL") == [(4,)]
    finally:
        for store in opened:
            store.close()


def test_a_role_that_may_only_read_and_insert_is_told_to_have_the_owner_migrate_first(
    postgres: LocalPostgres,
) -> None:
    """The receiver runs under a least-privilege role; the tables' owner must start it once
    after the update. Until then the role's receiver says so and changes nothing."""
    old_tables = tuple(_old_schema("postgresql://"))
    url = _least_privilege_url(postgres, "SELECT, INSERT", old_tables)
    with pytest.raises(StoreError, match=r"up to date .*as the tables' owner.*permission denied"):
        open_store(url)
    schema = url.rsplit("%3D", 1)[1]
    owner = f"{postgres.url()}?options=-csearch_path%3D{schema}"
    open_store(owner).close()
    store = open_store(url)
    try:
        assert store.store([{"id": "a", "gateway_id": GATEWAY, "seq": 1, "outbox_id": NEW}]) == 1
        assert [(s.outbox_id, s.punches) for s in store.summary()] == [(NEW, 1)]
    finally:
        store.close()
