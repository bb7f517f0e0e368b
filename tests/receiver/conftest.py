"""Fixtures for the receiver's PostgreSQL store: one private cluster per session, a database per
test, plus the MQTT suite's outbox and delivery-worker fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.mqtt.conftest import collectors, contract, outbox, workers
from tests.support.postgres import LocalPostgres, PostgresUnavailable

# The MQTT suite's fixtures serve these tests too: re-exported, pytest finds them here.
__all__ = ["collectors", "contract", "outbox", "pg_url", "postgres", "workers"]


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
    """The URL of a fresh, empty database on the session's cluster."""
    try:
        return postgres.create_database(f"test_{uuid.uuid4().hex[:16]}")
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
