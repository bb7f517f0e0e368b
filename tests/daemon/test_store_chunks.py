"""A big read is stored in chunks: other terminals get in between, the watermark comes last."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.daemon.outbox_sink import store_in_chunks
from buffer.outbox import Outbox
from drivers.base import Punch
from tests.buffer.factory import punches
from tests.daemon.zk_worker import clearing_worker
from tests.drivers.zk.driver_support import simulator
from tests.support.wait import wait_for


class Recording:
    """The real outbox, with a note of every store: its size and whether it set the watermark."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.stores: list[tuple[str, int, bool]] = []
        self.lock = threading.Lock()

    def add_punches(
        self,
        batch: Sequence[Punch],
        *,
        device_id: str | None = None,
        watermark: dict[str, Any] | None = None,
        device_serial: str | None = None,
    ) -> Any:
        result = self.outbox.add_punches(
            batch, device_id=device_id, watermark=watermark, device_serial=device_serial
        )
        with self.lock:
            self.stores.append((device_id or "", len(batch), watermark is not None))
        return result

    def watermark(self, device_id: str) -> dict[str, Any] | None:
        return self.outbox.watermark(device_id)

    def device_serial(self, device_id: str) -> str | None:
        return self.outbox.device_serial(device_id)


def test_a_full_log_is_stored_in_chunks_with_the_watermark_last_and_cleared_after(
    tmp_path: Path,
) -> None:
    with (
        Outbox.open(tmp_path / "outbox.db", "gw-test", disk_reserve_bytes=0) as outbox,
        simulator(users=5, records=2500, record_capacity=2600) as sim,
    ):
        sink = Recording(outbox)
        worker = clearing_worker(sim, sink, store_chunk=1000)
        try:
            wait_for(lambda: not sim.records, timeout=20, what="the full log cleared")
        finally:
            worker.stop()
            assert worker.join(10)
        reads = [(size, marks) for dev, size, marks in sink.stores if size]
        # Three transactions; only the last carries the watermark, and the clear came after it.
        assert reads[:3] == [(1000, False), (1000, False), (500, True)]
        assert outbox.stats().pending == 2500
        assert (outbox.watermark("lobby-1") or {}).get("count") == 2500


def test_a_crash_between_chunks_loses_nothing_and_the_reread_stores_only_the_rest(
    tmp_path: Path,
) -> None:
    """Chunks before the crash are stored under the old watermark: read again, they dedupe."""
    log = punches(0, 2500)

    class Crashing(Recording):
        def add_punches(
            self,
            batch: Sequence[Punch],
            *,
            device_id: str | None = None,
            watermark: dict[str, Any] | None = None,
            device_serial: str | None = None,
        ) -> Any:
            if len(self.stores) == 2:
                raise OSError("power cut")
            return super().add_punches(
                batch, device_id=device_id, watermark=watermark, device_serial=device_serial
            )

    with Outbox.open(tmp_path / "outbox.db", "gw-test", disk_reserve_bytes=0) as outbox:
        with pytest.raises(OSError, match="power cut"):
            store_in_chunks(
                Crashing(outbox), log, 1000, device_id="lobby-1", watermark={"count": 2500},
                serial="SER-1", progress=lambda: None,
            )  # fmt: skip
        assert outbox.stats().pending == 2000 and outbox.watermark("lobby-1") is None
        inserted, duplicates = store_in_chunks(
            Recording(outbox), log, 1000, device_id="lobby-1", watermark={"count": 2500},
            serial="SER-1", progress=lambda: None,
        )  # fmt: skip
        assert (inserted, duplicates) == (500, 2000)
        assert outbox.stats().pending == 2500 and outbox.watermark("lobby-1") == {"count": 2500}
