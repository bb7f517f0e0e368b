"""Stats, retention and the free-disk alarm."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from buffer import Outbox
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def test_stats_report_counts_ages_devices_and_sizes(outbox: Outbox) -> None:
    received = datetime.now(UTC) - timedelta(minutes=10)
    outbox.add_punches(punches(0, 5), watermark={"records": 5}, received_at=received)
    outbox.add_punches(punches(0, 2, device="gate-2", serial="SER-G2"))
    outbox.mark_delivered([r.id for r in outbox.next_batch(2)])
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.last_seq, stats.last_delivered_seq) == (
        5,
        2,
        7,
        2,
    )
    assert stats.oldest_pending_seq == 3
    assert stats.oldest_pending_age_s is not None and 590 < stats.oldest_pending_age_s < 900
    devices = {d.device_id: d for d in stats.devices}
    assert devices["lobby-1"].watermark == {"records": 5}
    assert devices["lobby-1"].last_seq == 5 and devices["gate-2"].serial == "SER-G2"
    assert devices["lobby-1"].last_punch_utc is not None
    assert stats.db_size_bytes > 0 and stats.free_disk_bytes > 0 and not stats.disk_alarm
    data = json.loads(json.dumps(stats.as_dict()))
    assert data["pending"] == 5 and data["devices"][0]["device_id"] == "gate-2"


def test_stats_of_an_empty_outbox(outbox: Outbox) -> None:
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.last_seq) == (0, 0, 0)
    assert stats.oldest_pending_age_s is None and stats.devices == []


def test_prune_removes_only_old_delivered_rows(outbox: Outbox) -> None:
    outbox.add_punches(punches(0, 30))
    outbox.mark_delivered([r.id for r in outbox.next_batch(20)])
    now = datetime.now(UTC)
    assert outbox.prune(30, now=now) == 0  # delivered a moment ago: kept
    assert outbox.prune(30, batch=7, now=now + timedelta(days=31)) == 20  # 3 small transactions
    remaining = outbox.list()
    assert [r.seq for r in remaining] == list(range(21, 31))
    assert all(r.delivery == "pending" for r in remaining)
    stats = outbox.stats()
    assert (stats.pending, stats.delivered) == (10, 0)
    assert outbox.check() == []


def test_prune_never_touches_undelivered_rows_however_old(outbox_path: Path) -> None:
    with Outbox.open(outbox_path, GATEWAY) as box:
        ancient = datetime(2000, 1, 1, tzinfo=UTC)
        box.add_punches(punches(0, 10), received_at=ancient)
        box.mark_sent([r.id for r in box.next_batch(10)])
        box.mark_failed([r.id for r in box.next_batch(10)], "broker down for a month")
        assert box.prune(0, now=datetime(2100, 1, 1, tzinfo=UTC)) == 0
        assert box.stats().pending == 10


def test_low_disk_raises_the_alarm_but_still_stores_punches(outbox_path: Path) -> None:
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=2**62) as box:
        assert box.disk_alarm
        result = box.add_punches(punches(0, 5))
        assert result.inserted == 5
        stats = box.stats()
        assert stats.disk_alarm and stats.pending == 5 and stats.disk_reserve_bytes == 2**62
        assert stats.as_dict()["disk_alarm"] is True
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as box:
        assert not box.stats().disk_alarm
        assert box.stats().pending == 5  # nothing was evicted to make room
