"""The receiver under least privilege: a PostgreSQL role the DBA allowed to read and insert
(an analyst's ``--gaps`` only to read), a service user and a SQLite file it cannot write."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from psycopg import sql

from agent.receiver import open_store
from agent.receiver.gaps import COPIES_CREATE
from agent.receiver.store import PG_CREATE, PostgresStore, StoreError
from tests.support.postgres import SERVER_USER, LocalPostgres, import_psycopg
from tests.support.users import other_user

_TABLES = (
    PG_CREATE,
    "CREATE INDEX punches_gateway_seq ON punches(gateway_id, seq)",
    COPIES_CREATE,
)


def _least_privilege_url(
    postgres: LocalPostgres, privileges: str, tables: tuple[str, ...] = _TABLES
) -> str:
    """A fresh schema whose ``tables`` the superuser made, and a role with ``privileges`` on
    them."""
    name = f"hr_{uuid.uuid4().hex[:12]}"
    psycopg = import_psycopg()
    with psycopg.connect(postgres.url(), autocommit=True, connect_timeout=10) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL("SET search_path = {}").format(ident))
        for create in tables:
            conn.execute(create)  # constants of these tests
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


def test_a_sqlite_database_this_user_cannot_write_says_what_to_fix() -> None:
    """The receiver runs as a service user; the file was made by root. SQLite says only
    'attempt to write a readonly database' / 'unable to open database file'."""
    # Not tmp_path: its parents are private to root, and the other user must reach the file.
    with tempfile.TemporaryDirectory(prefix="punchgate-receiver-") as folder:
        root = Path(folder)
        open_store(str(root / "hr.db")).close()
        root.chmod(0o755)
        (root / "hr.db").chmod(0o644)
        for name in ("hr.db", "new.db"):
            with other_user(), pytest.raises(StoreError) as caught:
                open_store(str(root / name))
            message = str(caught.value)
            assert str(root / name) in message
            assert "must be able to write it" in message and "-wal" in message, message
