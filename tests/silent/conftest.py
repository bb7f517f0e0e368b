"""Fixtures of the silent-peer hunt: the receiver suite's PostgreSQL cluster and the MQTT
suite's outbox and delivery workers, reused."""

from tests.mqtt.conftest import outbox, workers  # noqa: F401 - pytest finds them here
from tests.receiver.conftest import pg_url, postgres  # noqa: F401 - pytest finds them here
