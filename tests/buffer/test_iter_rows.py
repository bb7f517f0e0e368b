"""``Outbox.iter_rows``: every row in seq order, page by page (for exports)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from buffer.outbox import Outbox
from drivers.base import Punch, PunchState


def punch(minute: int) -> Punch:
    local = datetime(2026, 11, 20, 8, 0) + timedelta(minutes=minute)
    return Punch(
        device_id="lobby-1",
        device_serial="SER1",
        employee=str(minute % 7),
        device_time=local,
        time_utc=(local - timedelta(hours=1)).replace(tzinfo=UTC),
        utc_offset_minutes=60,
        state=PunchState.IN,
    )


def test_iter_rows_pages_through_every_row_in_seq_order(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "outbox.db", "gw") as outbox:
        outbox.add_punches([punch(m) for m in range(25)])
        rows = list(outbox.iter_rows(page=4))
        assert [r.seq for r in rows] == list(range(1, 26))
        assert len(list(outbox.iter_rows(page=25))) == 25  # an exactly full last page


def test_iter_rows_since_filters_on_the_punch_time(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "outbox.db", "gw") as outbox:
        outbox.add_punches([punch(m) for m in range(10)])
        since = datetime(2026, 11, 20, 7, 5, tzinfo=UTC)  # 08:05 local
        rows = list(outbox.iter_rows(since=since, page=3))
        assert [r.device_time.minute for r in rows if r.device_time] == [5, 6, 7, 8, 9]
