"""A terminal's log is cleared only when its punches are durable: not into a deleted outbox."""

from __future__ import annotations

import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.daemon.device_worker import DeviceWorker
from agent.wiring import zk_options
from buffer.outbox import Outbox
from config.settings import ZkDeviceSettings
from drivers.backoff import Backoff
from drivers.zk import ZkDriver
from tests.drivers.zk.driver_support import TZ, simulator
from tests.support.wait import wait_for


def test_a_full_terminal_log_is_kept_when_the_state_directory_was_deleted(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    with (
        Outbox.open(path, "gw-test", disk_reserve_bytes=0) as outbox,
        simulator(users=3, records=46, record_capacity=50) as sim,
    ):
        shutil.rmtree(path.parent)  # a technician "cleaning up" /var/lib/punchgate
        device = ZkDeviceSettings(
            id="lobby-1", kind="zk", host="127.0.0.1", port=sim.port, poll_interval=1,
            timeout=2, clear_after_read=True, clear_threshold=0.9,
        )  # fmt: skip
        worker = DeviceWorker(
            device,
            lambda: ZkDriver(device.id, zk_options(device), ZoneInfo(str(TZ))),
            outbox,
            TZ,
            backoff=Backoff(0.01, 0.05),
        ).start()
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
