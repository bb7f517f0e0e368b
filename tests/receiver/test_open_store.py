"""What each backend's ``--db`` accepts, and what it says when it cannot open the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.localbroker import free_port
from agent.receiver import open_store
from agent.receiver.store import PG_CREATE, PostgresStore, SqliteStore, StoreError
from config.errors import ConfigError
from tests.receiver.conftest import rows
from tests.support.postgres import LocalPostgres, import_psycopg


def test_open_store_refuses_other_url_schemes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        open_store("mysql://db/hr")
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == tmp_path / "x.db"
        assert store.count() == 0
    finally:
        store.close()


def test_open_store_takes_the_short_postgres_scheme_too(pg_url: str) -> None:
    store = open_store(pg_url.replace("postgresql://", "postgres://", 1))
    try:
        assert isinstance(store, PostgresStore)
        assert store.count() == 0
    finally:
        store.close()


def test_sqlite_store_says_which_file_it_cannot_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database's directory should be\n")
    with pytest.raises(StoreError, match="cannot open the receiver database") as caught:
        open_store(str(blocker / "hr.db"))
    assert str(blocker / "hr.db") in str(caught.value)


def test_postgres_store_says_which_server_or_database_it_cannot_open(
    postgres: LocalPostgres,
) -> None:
    closed = free_port()
    with pytest.raises(StoreError, match="cannot open the receiver database") as caught:
        open_store(f"postgresql://postgres@127.0.0.1:{closed}/hr?connect_timeout=2")
    assert "127.0.0.1" in str(caught.value) and str(closed) in str(caught.value)
    with pytest.raises(StoreError, match="no_such_db"):
        open_store(postgres.url("no_such_db"))


def test_a_postgres_table_from_before_bigint_is_widened_when_opened(pg_url: str) -> None:
    """Receivers before BIGINT made 32-bit integer columns: opening widens them, keeping rows."""
    narrow = PG_CREATE.replace("utc_offset_minutes BIGINT", "utc_offset_minutes INTEGER")
    narrow = narrow.replace("state_code BIGINT", "state_code INTEGER")
    narrow = narrow.replace("verify_code BIGINT", "verify_code INTEGER")
    assert narrow.count("INTEGER") == 4  # the three and replayed (0 or 1)
    with import_psycopg().connect(pg_url, connect_timeout=10) as conn:
        conn.execute(narrow)
        conn.execute(
            "INSERT INTO punches (id, gateway_id, seq, state_code, replayed, stored_at)"
            " VALUES ('gw-a-1', 'gw-a', 1, 4, 0, 'then')"
        )
    store = open_store(pg_url)
    try:
        assert store.store([{"id": "gw-a-2", "gateway_id": "gw-a", "seq": 2, "state_code": 2**40}])
        assert store.ids() == ["gw-a-1", "gw-a-2"]
    finally:
        store.close()
    types = rows(
        pg_url,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = 'punches' AND data_type LIKE '%int%' ORDER BY 1",
    )
    assert types == [
        ("replayed", "integer"),
        ("seq", "bigint"),
        ("state_code", "bigint"),
        ("utc_offset_minutes", "bigint"),
        ("verify_code", "bigint"),
    ]
    assert rows(pg_url, "SELECT state_code FROM punches ORDER BY seq") == [(4,), (2**40,)]
    open_store(pg_url).close()  # a second open finds nothing to widen
