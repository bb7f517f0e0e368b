"""Fixtures for the MQTT suite: an outbox with punches, fast worker options, contract checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.localbroker import LocalMosquitto
from agent.mqtt import Contract, DeliveryWorker, MqttOptions
from buffer.outbox import Outbox
from drivers.base import Punch, PunchState, VerifyMethod
from tests.support.mqtt import Collector, Message

GATEWAY = "gw-1"
PREFIX = "punchgate/v1"
T0 = datetime(2024, 5, 1, 8, 0, 0)


def make_punches(count: int, *, start: int = 0, device: str = "dev-1") -> list[Punch]:
    """``count`` distinct device punches one second apart (Berlin summer time, +02:00)."""
    out = []
    for i in range(start, start + count):
        local = T0 + timedelta(seconds=i)
        out.append(
            Punch(
                device_id=device,
                device_serial="SER-" + device,
                employee=str(1000 + i % 300),
                device_time=local,
                time_utc=(local - timedelta(hours=2)).replace(tzinfo=UTC),
                utc_offset_minutes=120,
                state=PunchState.IN if i % 2 == 0 else PunchState.OUT,
                state_code=i % 2,
                verify=VerifyMethod.FINGERPRINT,
                verify_code=1,
            )
        )
    return out


def fast_options(url: str | list[str], **changes: Any) -> MqttOptions:
    """Options with test-sized timings: reconnects in tens of ms, quick polling."""
    urls = (url,) if isinstance(url, str) else tuple(url)
    base = MqttOptions(
        urls=urls,
        client_id=f"punchgate-{GATEWAY}",
        keepalive=5,
        connect_timeout=3,
        reconnect_min=0.02,
        reconnect_max=0.2,
        poll_interval=0.02,
        ack_timeout=5,
        status_interval=3600,
    )
    return base.with_(**changes)


SCHEMA_BY_SUFFIX = {
    "/punches": "punches",
    "/status": "gateway-status",
    "/ack": "ack",
}


def schema_for(topic: str) -> str | None:
    """The contract schema of a topic under the prefix (None for topics outside the contract)."""
    if "/devices/" in topic and topic.endswith("/status"):
        return "device-status"
    if "/reply/" in topic:
        return "command-reply"
    for suffix, name in SCHEMA_BY_SUFFIX.items():
        if topic.endswith(suffix):
            return name
    return None


def assert_contract(contract: Contract, messages: list[Message]) -> int:
    """Every message on a contract topic validates; returns how many were checked."""
    checked = 0
    for message in messages:
        name = schema_for(message.topic)
        if name is None:
            continue
        problems = contract.errors(name, message.json())
        assert not problems, f"{message.topic} breaks {name}.json: {problems[:3]}"
        checked += 1
    return checked


def punches_in(messages: list[Message]) -> list[dict[str, Any]]:
    """Every punch of every batch, in arrival order."""
    return [p for m in messages if m.topic.endswith("/punches") for p in m.json()["punches"]]


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A CLI test re-targets structlog at CliRunner's stream, closed afterwards; undo that."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract.load()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open(tmp_path / "outbox.db", GATEWAY)
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def workers() -> Iterator[Callable[..., DeliveryWorker]]:
    """Build and start workers; every one is stopped at the end of the test."""
    started: list[DeliveryWorker] = []

    def make(options: MqttOptions, outbox: Outbox, **kwargs: Any) -> DeliveryWorker:
        kwargs.setdefault("site", "Berlin HQ")
        worker = DeliveryWorker(options, outbox, GATEWAY, **kwargs)
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop(timeout=1)


@pytest.fixture
def collectors(broker: LocalMosquitto) -> Iterator[Callable[..., Collector]]:
    """Persistent-session subscribers on the broker fixture, stopped at the end of the test."""
    made: list[Collector] = []

    def make(topics: list[str] | None = None, url: str | None = None) -> Collector:
        collector = Collector(url or broker.url, topics or [f"{PREFIX}/#"]).start()
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.stop()
