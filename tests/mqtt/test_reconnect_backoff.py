"""The connection's life cycle against fake brokers: the reconnect backoff across connections
(kept while the broker drops us, reset once one held), and a clean close.

The backoff's random source is injected (seeded, recording each draw): the tests check the delays
the connection drew and that it waited for each, never an upper bound of real time, which a
machine that stalls (a loaded CI) would break.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.localbroker import LocalMosquitto, free_port
from agent.mqtt import MqttOptions
from agent.mqtt.connection import STABLE_AFTER, MqttConnection
from drivers.backoff import Backoff
from tests.mqtt.conftest import fast_options
from tests.support.wait import wait_for

CONNACK_ACCEPTED = bytes([0x20, 0x02, 0x00, 0x00])  # MQTT 3.1.1: session present 0, return code 0


@dataclass
class Drop:
    """One ``on_disconnected`` call and the backoff count the connection had decided on by then."""

    generation: int
    reason: str
    attempts: int
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Draw:
    """One reconnect delay the connection drew: ``uniform(low, cap)`` gave ``delay`` at ``at``."""

    low: float
    cap: float
    delay: float
    at: float


class RecordingRandom(random.Random):
    """The backoff's random source: seeded (the same delays every run), every draw recorded."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws: list[Draw] = []

    def uniform(self, a: float, b: float) -> float:
        delay = super().uniform(a, b)
        # Appended on the network thread just before it waits; read after close().
        self.draws.append(Draw(a, b, delay, time.monotonic()))
        return delay


# s: how much earlier than its delay a wait may seem to end (clock granularity). A reconnect
# that did not wait at all would come a whole delay early.
EARLY_SLACK = 0.002


@dataclass
class Recorder:
    """A ``ConnectionHandler`` that records connects and drops (it never blocks)."""

    connection: MqttConnection | None = None
    connected: list[tuple[int, str]] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)

    def on_connected(self, generation: int, broker_url: str) -> None:
        self.connected.append((generation, broker_url))

    def on_disconnected(self, generation: int, reason: str) -> None:
        assert self.connection is not None
        self.drops.append(Drop(generation, reason, self.connection.reconnect_attempts))

    def on_published(self, generation: int, mid: int, ok: bool, reason: str) -> None:
        """Nothing is published in these tests."""

    def on_message(self, generation: int, message: mqtt.MQTTMessage) -> None:
        """Nothing is subscribed in these tests."""


Connect = Callable[..., tuple[MqttConnection, Recorder]]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Connections with a recording handler (started unless ``start=False``), closed at the end."""
    made: list[MqttConnection] = []

    def make(
        options: MqttOptions, *, start: bool = True, **kwargs: Any
    ) -> tuple[MqttConnection, Recorder]:
        recorder = Recorder()
        connection = MqttConnection(options, recorder, **kwargs)
        recorder.connection = connection
        made.append(connection.start() if start else connection)
        return connection, recorder

    yield make
    for connection in made:
        connection.close(timeout=2)  # also safe for one never started


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("client closed before its CONNECT was complete")
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> bytes:
    """One whole MQTT control packet: fixed header, variable-length remaining length, body."""
    header = _read_exactly(sock, 1)
    remaining, shift = 0, 0
    for _ in range(4):  # the remaining length takes at most four bytes
        byte = _read_exactly(sock, 1)[0]
        remaining |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header + _read_exactly(sock, remaining)


class FlappingBroker:
    """Accepts, reads the CONNECT, answers a valid CONNACK and closes at once, ``limit`` times.

    ``observe`` runs on the server thread as each connection is accepted; its results are kept
    in ``accepted`` with the time of the accept. Set it before the client starts.
    """

    def __init__(self, limit: int) -> None:
        self.observe: Callable[[], int] = lambda: 0
        self.limit = limit
        self.accepted: list[tuple[float, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="flapping-broker", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        with self._server:
            while not self._stop.is_set() and len(self.accepted) < self.limit:
                try:
                    client, _ = self._server.accept()
                except TimeoutError:
                    continue
                self.accepted.append((time.monotonic(), self.observe()))
                with client:
                    client.settimeout(5)
                    try:
                        packet = _read_packet(client)
                        if packet[0] != 0x10:
                            self.errors.append(f"first packet is not a CONNECT: {packet[:8]!r}")
                        # Everything the client sent is read, so close() ends with FIN, not RST.
                        client.sendall(CONNACK_ACCEPTED)
                    except OSError as exc:
                        self.errors.append(f"serving a connection failed: {exc!r}")
        # Leaving the with-block closed the listener: later attempts are refused.

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def flapping() -> Iterator[Callable[[int], FlappingBroker]]:
    """Start flapping brokers; every one is stopped at the end of the test."""
    made: list[FlappingBroker] = []

    def make(limit: int) -> FlappingBroker:
        made.append(FlappingBroker(limit))
        return made[-1]

    yield make
    for server in made:
        server.stop()


def _cap(options: MqttOptions, attempts: int) -> float:
    """The upper bound of the delay drawn after ``attempts`` earlier delays (drivers.backoff)."""
    backoff = Backoff(options.reconnect_min, options.reconnect_max)
    backoff.attempt = attempts
    return backoff.cap()


def test_stable_threshold_defaults_to_the_module_constant() -> None:
    connection = MqttConnection(fast_options("mqtt://127.0.0.1:1"), Recorder())
    assert connection.stable_after == STABLE_AFTER == 10.0
    assert connection.reconnect_attempts == 0
    assert connection.status().reconnect_attempts == 0


def test_a_broker_that_drops_us_right_after_connack_is_retried_ever_more_slowly(
    connect: Connect, flapping: Callable[[int], FlappingBroker]
) -> None:
    """The count is kept across accepted-and-dropped connections, so the delay cap keeps growing."""
    options = fast_options(
        "mqtt://127.0.0.1:1", protocol="3.1.1", reconnect_min=0.01, reconnect_max=0.16
    )
    server = flapping(10)
    rng = RecordingRandom(seed=2026)
    # stable_after far above the test's length: no stall of the machine makes a drop look held.
    connection, recorder = connect(
        options.with_(urls=(server.url,)), start=False, stable_after=300.0, backoff_rng=rng
    )
    server.observe = lambda: connection.reconnect_attempts
    connection.start()
    wait_for(
        lambda: len(recorder.drops) >= 10, timeout=30, what="ten accepted-and-dropped connections"
    )
    connection.close(timeout=2)

    assert not server.errors
    # Every connection was accepted (a CONNACK arrived) and then lost, none held.
    assert [generation for generation, _ in recorder.connected[:10]] == list(range(1, 11))
    assert all("lost" in drop.reason for drop in recorder.drops[:10])
    # Not reset by the CONNACKs: the k-th connection started after k-1 delays, and each drop
    # left the count where that connection found it (the next delay then adds one).
    assert [attempts for _, attempts in server.accepted] == list(range(10))
    assert [drop.attempts for drop in recorder.drops[:10]] == list(range(10))
    caps = [_cap(options, attempts) for _, attempts in server.accepted]
    assert caps[:5] == [0.01, 0.02, 0.04, 0.08, 0.16] and set(caps[5:]) == {0.16}
    # The delays drawn before the 2nd to 10th connection: full jitter under caps that double
    # from reconnect_min up to reconnect_max (far below an uncapped 0.01 * 2**8 = 2.56 s) ...
    draws = rng.draws[:9]
    assert [draw.cap for draw in draws] == caps[:9]
    assert all(draw.low == 0.0 and 0.0 <= draw.delay <= draw.cap for draw in draws)
    expected = Backoff(options.reconnect_min, options.reconnect_max, random.Random(2026))
    assert [draw.delay for draw in draws] == [expected.next_delay() for _ in range(9)]
    # ... and each was waited for: the next connection came no earlier than its delay after the
    # draw (a lower bound only: a machine that stalls makes the wait longer, never shorter).
    accepted_at = [at for at, _ in server.accepted]
    for index, draw in enumerate(draws):
        waited = accepted_at[index + 1] - draw.at
        assert waited >= draw.delay - EARLY_SLACK, (index, waited, draw)
    assert connection.status().reconnect_attempts >= 10


def test_a_connection_that_held_starts_the_backoff_over(
    broker: LocalMosquitto, connect: Connect
) -> None:
    """After refused attempts, a connection that lasts ``stable_after`` resets the count to 0,
    so the first delay after the broker restarts is drawn under the minimum cap again."""
    options = fast_options(broker.url, reconnect_min=0.01, reconnect_max=0.08)
    broker.stop()
    rng = RecordingRandom(seed=7)
    connection, recorder = connect(options, stable_after=0.3, backoff_rng=rng)
    wait_for(lambda: connection.reconnect_attempts >= 3, timeout=5, what="refused attempts")
    assert not connection.connected
    # The caps grew while the broker refused us.
    assert [draw.cap for draw in rng.draws[:3]] == [0.01, 0.02, 0.04]

    broker.start()
    wait_for(
        lambda: connection.connected and connection.reconnect_attempts == 0,
        timeout=10,
        what="the backoff starting over once the connection held",
    )
    assert recorder.connected == [(1, broker.url)] and not recorder.drops
    assert connection.status().reconnect_attempts == 0

    broker.stop()
    wait_for(lambda: recorder.drops, timeout=10, what="the broker stop to end the connection")
    first = recorder.drops[0]
    assert first.generation == 1 and "lost" in first.reason
    # The count the first reconnect delay is drawn with: 0, so its cap is the minimum.
    assert first.attempts == 0
    assert _cap(options, first.attempts) == options.reconnect_min

    broker.start()
    wait_for(lambda: connection.connected and connection.generation == 2, timeout=10)
    assert recorder.connected[-1] == (2, broker.url)
    # The delay actually drawn after the drop was under the minimum cap again.
    after_drop = [draw for draw in rng.draws if draw.at >= first.at]
    assert after_drop and after_drop[0].cap == options.reconnect_min, after_drop[:1]
    # Delays since the drop: one for the first retry plus one per refused attempt.
    assert connection.reconnect_attempts >= 1


def test_a_refused_connection_grows_the_count(connect: Connect) -> None:
    options = fast_options(
        f"mqtt://127.0.0.1:{free_port()}", reconnect_min=0.01, reconnect_max=0.04
    )
    connection, recorder = connect(options)
    seen: list[int] = []

    def grown() -> bool:
        seen.append(connection.reconnect_attempts)
        return seen[-1] >= 5

    wait_for(grown, timeout=5, interval=0.005, what="five refused attempts")
    assert seen == sorted(seen)  # never reset while refused
    status = connection.status()
    assert not status.connected and status.connects == 0 and not recorder.connected
    assert "refused" in (status.last_error or "")


def test_failover_leaves_a_broker_that_drops_every_connection_right_after_connack(
    broker: LocalMosquitto,
    connect: Connect,
    flapping: Callable[[int], FlappingBroker],
) -> None:
    """A load balancer with no backend accepts and drops us: the next URL is tried and holds."""
    server = flapping(100)
    options = fast_options(
        [server.url, broker.url], protocol="3.1.1", reconnect_min=0.01, reconnect_max=0.08
    )
    connection, recorder = connect(options, stable_after=0.3)
    wait_for(
        lambda: (
            connection.connected
            and connection.status().broker_url == broker.url
            and connection.reconnect_attempts == 0
        ),
        timeout=10,
        what="a connection to the second URL that held",
    )
    assert len(server.accepted) == 1
    assert [url for _, url in recorder.connected] == [server.url, broker.url]


def test_a_clean_close_says_disconnect_before_the_socket_closes(connect: Connect) -> None:
    """DISCONNECT is what keeps the broker from publishing the last will ("offline" as after a
    crash). The network thread sends it: it is the socket's only writer."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    packets: list[int] = []

    def serve() -> None:
        client, _ = server.accept()
        with client:
            client.settimeout(5)
            packets.append(_read_packet(client)[0])
            client.sendall(CONNACK_ACCEPTED)
            for _ in range(100):  # bounded: the client closes right after DISCONNECT
                try:
                    packets.append(_read_packet(client)[0])
                except (ConnectionError, OSError):
                    return

    thread = threading.Thread(target=serve, name="recording-broker", daemon=True)
    thread.start()
    with server:
        url = f"mqtt://127.0.0.1:{server.getsockname()[1]}"
        connection, recorder = connect(fast_options(url, protocol="3.1.1"))  # our CONNACK is 3.1.1
        wait_for(lambda: recorder.connected, timeout=5, what="the connection")
        connection.close(timeout=2)
        thread.join(timeout=5)
    assert packets[0] == 0x10 and packets[-1] == 0xE0  # CONNECT ... DISCONNECT
    assert [d.reason for d in recorder.drops] == ["closed by us"]
