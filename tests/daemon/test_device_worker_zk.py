"""A device worker against the ZK simulator and a real outbox: clearing only what is durable."""

from __future__ import annotations

from pathlib import Path

import pytest

from buffer.outbox import Outbox
from tests.daemon.zk_worker import clearing_worker
from tests.drivers.zk.driver_support import simulator
from tests.support.wait import wait_for


@pytest.mark.parametrize("live", [False, True])
def test_a_full_log_is_cleared_only_after_every_punch_read_is_in_the_outbox(
    tmp_path: Path, live: bool
) -> None:
    with (
        Outbox.open(tmp_path / "outbox.db", "gw-test", disk_reserve_bytes=0) as outbox,
        simulator(users=3, records=46, record_capacity=50) as sim,
    ):
        worker = clearing_worker(sim, outbox, live=live, live_chunk=0.1)
        try:
            # Cleared, and enabled again: a disabled terminal records no punch (as a real one).
            wait_for(lambda: not sim.records and not sim.disabled, timeout=10, what="log cleared")
            assert outbox.stats().pending == 46  # every record was stored before the clear
            for n in range(3):
                assert sim.punch(sim.users[n].user_id) is not None
            wait_for(lambda: outbox.stats().pending == 49, timeout=10, what="3 new punches")
        finally:
            worker.stop()
            assert worker.join(10)
        assert len(sim.records) == 3  # below the threshold again: kept
        assert [p.employee for p in outbox.list()][-3:] == [u.user_id for u in sim.users[:3]]
