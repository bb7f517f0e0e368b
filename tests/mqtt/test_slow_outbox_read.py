"""A slow outbox read is waited for, not taken for a delivery failure, whatever ack_timeout is.

A page read can take seconds on a gateway: an SD card stalling on a write burst, or SQLite
waiting up to its busy timeout (10 s). With a short `ack_timeout` (a fast LAN backend) and a
read slower than it, nothing was delivered at all: the read was bounded by `ack_timeout` (the
step failed, the window was rewound, again and again), and batches published after a slow read
were stamped with the time before it, so their acks "timed out" before they were looked at.
The slow disk cannot be produced here, so the outbox's readers wait before reading (the one
stand-in in this file).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from buffer.payload import Page, PayloadReader
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches, punches_in
from tests.support.mqtt import Collector

STALL = 1.0  # seconds each page read waits: over ack_timeout below, far under SQLite's 10 s


class _StallingReader(PayloadReader):
    """Reads the real outbox, after the stall a slow disk would cause."""

    def read(self, limit: int, after_seq: int, sent: int | None = None) -> Page:
        threading.Event().wait(STALL)
        return super().read(limit, after_seq, sent)


class _SlowDiskOutbox(Outbox):
    def payload_reader(self, site: str) -> PayloadReader:
        return _StallingReader(self.path, self._busy_timeout, site)


@pytest.fixture
def slow_outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = _SlowDiskOutbox.open(tmp_path / "outbox.db", GATEWAY)
    try:
        yield box
    finally:
        box.close()


def test_a_read_slower_than_ack_timeout_is_waited_for_not_failed(
    broker: LocalMosquitto,
    slow_outbox: Outbox,
    workers: Callable[..., DeliveryWorker],
    collectors: Callable[..., Collector],
) -> None:
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    slow_outbox.add_punches(make_punches(50))
    with structlog.testing.capture_logs() as logs:
        worker = workers(fast_options(broker.url, ack_timeout=0.3), slow_outbox)
        messages = collector.wait(
            lambda ms: {p["seq"] for p in punches_in(ms)} >= set(range(1, 51)),
            timeout=20,
            what="the 50 punches",
        )
        assert worker.flush(10)
    timeouts = [
        e for e in logs if e["event"] == "no acknowledgement within ack_timeout; re-sending"
    ]
    assert timeouts == [], "the worker's own wait for the disk was taken for a silent broker"
    failures = [e for e in logs if e["event"] == "delivery step failed; retrying"]
    assert failures == [], failures
    assert not any(p["replayed"] for p in punches_in(messages)), "the window was rewound"
