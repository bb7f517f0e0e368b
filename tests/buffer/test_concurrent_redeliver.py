"""``punchgate outbox redeliver`` (another process) while the daemon's delivery worker runs."""

from __future__ import annotations

import time
from pathlib import Path

from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer import Outbox
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches
from tests.mqtt.conftest import fast_options


def test_rows_a_technician_redelivers_are_sent_again_by_the_running_daemon(
    outbox_path: Path, broker: LocalMosquitto
) -> None:
    """The command promises: "The running daemon picks them up within seconds"."""
    options = fast_options(broker.url, poll_interval=0.05)
    with Outbox.open(outbox_path, GATEWAY, disk_reserve_bytes=0) as daemon:
        daemon.add_punches(punches(0, 50))
        worker = DeliveryWorker(options, daemon, GATEWAY, site="HQ").start()
        try:
            assert worker.flush(15), worker.status()
            assert daemon.stats().pending == 0
            with Outbox.open(outbox_path, GATEWAY, recover=False) as cli:  # as the CLI opens it
                assert cli.redeliver_from(1) == 50
            deadline = time.monotonic() + 10
            while daemon.stats().pending and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a condition with a deadline
            assert daemon.stats().pending == 0, "redelivered rows were never sent again"
        finally:
            worker.stop(timeout=2)
