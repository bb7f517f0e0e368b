"""A broker that stops reading mid-drain (the link freezes: no reset, no FIN) while the agent
stops, or answers commands: everything must end within its own timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker, MqttOptions
from agent.mqtt.connection import MqttConnection
from buffer.outbox import Outbox
from tests.mqtt.conftest import fast_options, make_punches
from tests.silent.peers import SilentListener
from tests.support.slowlink import SlowLink
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]


def test_stopping_delivery_while_the_broker_stopped_reading_mid_drain_ends_within_its_timeout(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
) -> None:
    outbox.add_punches(make_punches(2000))
    link = SlowLink(broker.port, stall=0.0, chunk=65_536, pause=0.0)
    try:
        options: MqttOptions = fast_options(link.url, batch_size=50, inflight=8, keepalive=30)
        worker = workers(options, outbox)
        wait_for(lambda: worker.status().delivered > 0, timeout=10, what="the drain under way")
        link.freeze()
        outbox.add_punches(make_punches(20_000, start=2000))
        worker.wake()
        wait_for(lambda: outbox.stats().pending > 0, timeout=5, what="rows left to send")
        began = time.monotonic()
        stopping = threading.Thread(target=worker.stop, kwargs={"timeout": 3.0}, daemon=True)
        stopping.start()
        stopping.join(10)
        assert not stopping.is_alive(), "stop() waited on a broker that stopped reading"
        assert time.monotonic() - began < 3.0 + 1.5
        assert not worker.alive
    finally:
        link.stop()


class _Quiet:
    """A connection handler that takes nothing in (the connection is all this test needs)."""

    def on_connected(self, generation: int, broker_url: str) -> None: ...

    def on_disconnected(self, generation: int, reason: str) -> None: ...

    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> None: ...

    def on_message(self, generation: int, message: object) -> None: ...


def test_a_tls_broker_that_accepts_and_never_answers_the_handshake_is_named_as_such() -> None:
    """TCP was accepted: the network path and the firewall are fine. Telling the technician to
    check them sent him the wrong way; it is the TLS side that does not answer."""
    with SilentListener() as silent:
        url = f"mqtts://127.0.0.1:{silent.port}"
        options = MqttOptions(urls=(url,), client_id="gw-silent", connect_timeout=1)
        connection = MqttConnection(options, _Quiet()).start()
        try:
            error = wait_for(
                lambda: connection.status().last_error, timeout=8, what="the failure reported"
            )
        finally:
            connection.close(3)
    assert "TLS handshake" in error, error
    assert "did not answer" in error and "within 1s" in error, error
    assert "firewall" not in error, error
