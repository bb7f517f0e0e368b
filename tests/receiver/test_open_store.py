"""What each backend's ``--db`` accepts, and what it says when it cannot open the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.localbroker import free_port
from agent.receiver import open_store
from agent.receiver.store import PostgresStore, SqliteStore, StoreError
from config.errors import ConfigError
from tests.support.postgres import LocalPostgres


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
