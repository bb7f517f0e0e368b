"""A night without brokers, primary and secondary both down: a warning per broker, not per retry."""

from __future__ import annotations

import structlog

from agent.localbroker import free_port
from agent.mqtt.connection import MqttConnection
from tests.mqtt.conftest import fast_options
from tests.support.wait import wait_for

ATTEMPTS = 40


class _Quiet:
    def on_connected(self, generation: int, broker_url: str) -> None: ...
    def on_disconnected(self, generation: int, reason: str) -> None: ...
    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> None: ...
    def on_message(self, generation: int, message: object) -> None: ...


def test_two_brokers_down_are_each_logged_once_not_at_every_alternating_retry() -> None:
    urls = [f"mqtt://127.0.0.1:{free_port()}", f"mqtt://127.0.0.1:{free_port()}"]
    options = fast_options(urls, reconnect_min=0.001, reconnect_max=0.005)
    with structlog.testing.capture_logs() as logs:
        connection = MqttConnection(options, _Quiet()).start()
        try:
            wait_for(
                lambda: connection.reconnect_attempts >= ATTEMPTS,
                timeout=10,
                what=f"{ATTEMPTS} attempts",
            )
        finally:
            connection.close(2)
    warned = [e["error"] for e in logs if e["event"] == "broker connect failed"]
    assert sorted(warned) == sorted(
        f"connection to {url} refused: is the broker running and listening on that port?"
        for url in urls
    ), f"{len(warned)} warnings for {ATTEMPTS} attempts"
    assert "refused" in (connection.status().last_error or "")
