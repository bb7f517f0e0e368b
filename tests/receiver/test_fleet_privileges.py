"""The receiver under a least-privilege PostgreSQL role: the DBA made the tables, the
receiver's role may read and insert (and the HR analyst's ``--gaps`` only read)."""

from __future__ import annotations

import uuid

from psycopg import sql

from agent.receiver.gaps import COPIES_CREATE
from agent.receiver.store import PG_CREATE, PostgresStore
from tests.support.postgres import SERVER_USER, LocalPostgres, import_psycopg


def _least_privilege_url(postgres: LocalPostgres, privileges: str) -> str:
    """A fresh schema whose tables the superuser made, and a role with ``privileges`` on them."""
    name = f"hr_{uuid.uuid4().hex[:12]}"
    psycopg = import_psycopg()
    with psycopg.connect(postgres.url(), autocommit=True, connect_timeout=10) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL("SET search_path = {}").format(ident))
        conn.execute(PG_CREATE)
        conn.execute("CREATE INDEX punches_gateway_seq ON punches(gateway_id, seq)")
        conn.execute(COPIES_CREATE)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, ident))
        for table in ("punches", "seq_copies"):
            grant = sql.SQL("GRANT " + privileges + " ON {} TO {}")  # a constant of this test
            conn.execute(grant.format(sql.Identifier(table), ident))
    url = postgres.url().replace(f"://{SERVER_USER}@", f"://{name}@", 1)
    assert name in url, url
    return f"{url}?options=-csearch_path%3D{name}"


def test_a_role_that_may_only_read_and_insert_runs_the_receiver(postgres: LocalPostgres) -> None:
    """Opening ran CREATE TABLE IF NOT EXISTS, which PostgreSQL refuses without the CREATE
    privilege on the schema even when the table exists: 'permission denied for schema'."""
    store = PostgresStore(_least_privilege_url(postgres, "SELECT, INSERT"))
    try:
        punches = [{"id": f"gw-{s}", "gateway_id": "gw", "seq": s} for s in (1, 2, 4)]
        assert store.store(punches) == 3
        assert store.store([{"id": "gw-1", "gateway_id": "gw", "seq": 3}]) == 0  # a copy
        assert store.gaps() == []
    finally:
        store.close()


def test_a_read_only_role_prints_the_gap_report(postgres: LocalPostgres) -> None:
    store = PostgresStore(_least_privilege_url(postgres, "SELECT"))
    try:
        assert store.count() == 0 and store.gaps() == [] and store.summary() == []
    finally:
        store.close()
