"""A full disk: a clear DiskFullError, no committed row lost, writing resumes afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from buffer import Outbox
from config.errors import DiskFullError
from tests.buffer.children import committed_ids, run_to_end, start
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def test_outbox_keeps_undelivered_rows_when_the_file_cannot_grow(outbox_path: Path) -> None:
    with Outbox.open(outbox_path, GATEWAY) as box:
        kept = box.add_punches(punches(0, 300), watermark={"next": 300}).ids
        conn = box._conn  # fault injection: the file may not grow by a single page
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(DiskFullError) as info:
            box.add_punches(punches(300, 5000), watermark={"next": 5300})
        message = str(info.value)
        assert "full" in message and "Nothing committed was lost" in message
        assert str(outbox_path) in message
        assert re.search(r"free now: [\d,]+\.\d MiB\)", message), message  # not raw bytes
        assert {r.id for r in box.list(limit=10_000)} == set(kept)
        assert box.watermark("lobby-1") == {"next": 300}
        conn.execute(f"PRAGMA max_page_count = {pages * 1000}")  # space freed
        assert box.add_punches(punches(300, 5000)).inserted == 5000
        assert box.check() == []


def test_a_file_size_limit_in_another_process_loses_no_committed_row(outbox_path: Path) -> None:
    Outbox.open(outbox_path, GATEWAY).close()
    lines = run_to_end(start("fill-disk", str(outbox_path)), timeout=90)
    errors = [line for line in lines if line.startswith("error ")]
    assert len(errors) == 1, lines[-5:]
    assert errors[0].startswith("error DiskFullError ")
    assert "is full" in errors[0] and "free space" in errors[0]
    expected = committed_ids(lines)
    assert len(expected) >= 600
    with Outbox.open(outbox_path, GATEWAY) as box:
        stored = {r.id for r in box.list(limit=1_000_000)}
        assert stored == expected  # every committed row, and nothing half-written
        last = max(
            int(line.split()[1]) + int(line.split()[2])
            for line in lines
            if line.startswith("committed")
        )
        assert box.watermark("lobby-1") == {"next": last}
        assert box.check() == []
