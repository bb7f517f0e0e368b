"""A terminal's log is cleared only when its punches are durable: not into a deleted outbox."""

from __future__ import annotations

import shutil
from pathlib import Path

from buffer.outbox import Outbox
from tests.daemon.zk_worker import clearing_worker
from tests.drivers.zk.driver_support import simulator
from tests.support.wait import wait_for


def test_a_full_terminal_log_is_kept_when_the_state_directory_was_deleted(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    with (
        Outbox.open(path, "gw-test", disk_reserve_bytes=0) as outbox,
        simulator(users=3, records=46, record_capacity=50) as sim,
    ):
        shutil.rmtree(path.parent)  # a technician "cleaning up" /var/lib/punchgate
        worker = clearing_worker(sim, outbox)
        try:
            wait_for(
                lambda: "deleted or replaced" in (worker.snapshot().last_error or ""),
                timeout=10,
                what="the worker reporting the deleted outbox",
            )
        finally:
            worker.stop()
            assert worker.join(10)
        assert len(sim.records) == 46  # else cleared: only in the unlinked file, lost at restart
        assert not sim.disabled
