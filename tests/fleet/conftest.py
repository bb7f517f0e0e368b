"""Fixtures of the fleet tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.localbroker import LocalMosquitto
from tests.daemon.harness import GATEWAY, PREFIX
from tests.support.mqtt import Collector


@pytest.fixture
def collector(broker: LocalMosquitto) -> Iterator[Collector]:
    """Everything the gateway publishes, from before the daemon starts."""
    sub = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/#"]).start()
    try:
        yield sub
    finally:
        sub.stop()
