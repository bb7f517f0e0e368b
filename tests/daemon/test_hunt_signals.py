"""Signal storms: many SIGHUPs (a config tool reloading once per file it writes), then SIGTERM."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.localbroker import LocalMosquitto
from config import load_settings
from config.settings import Settings
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import running, write_config, zk_device
from tests.support.wait import wait_for


def test_a_sighup_storm_is_one_reload_and_a_stop_behind_it_skips_the_rest(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    fleet = FakeFleet()
    config = write_config(
        tmp_path / "pg.toml", tmp_path / "state", broker.url, [zk_device("a-1", poll_interval=1)]
    )
    reads: list[Path | None] = []
    first_read = threading.Event()
    storm_queued = threading.Event()

    def loader(path: Path | None) -> Settings:
        reads.append(path)
        first_read.set()
        storm_queued.wait(10)  # the first reload is still reading when the storm arrives
        return load_settings(path)

    with running(config, fleet.factory, loader=loader) as handle:
        sup = handle.supervisor
        wait_for(lambda: sup.state == "running", timeout=10, what="the daemon running")
        sup.request_reload()
        assert first_read.wait(10)
        for _ in range(200):
            sup.request_reload()
        sup.request_stop()
        storm_queued.set()
        handle.thread.join(20)
        assert not handle.thread.is_alive() and handle.error is None
    assert len(reads) == 1
