"""Fixtures of the silent-peer hunt: the receiver suite's PostgreSQL cluster, reused."""

from tests.receiver.conftest import pg_url, postgres  # noqa: F401 - pytest finds them here
