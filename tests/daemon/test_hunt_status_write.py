"""A status file that cannot be written is logged when that starts and when it ends."""

from __future__ import annotations

from pathlib import Path

import structlog

from agent.daemon.status_file import read_status, status_path
from agent.localbroker import LocalMosquitto
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import running, write_config
from tests.support.wait import wait_for


def test_a_status_file_that_cannot_be_replaced_is_logged_once_not_every_interval(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    state = tmp_path / "state"
    # A long interval: only this test writes the status while the target is broken.
    config = write_config(
        tmp_path / "pg.toml", state, broker.url, [], agent={"status_interval": 60}
    )
    with running(config, FakeFleet().factory) as handle:
        sup = handle.supervisor
        wait_for(lambda: read_status(state), timeout=10, what="the first status")
        target = status_path(state)
        with structlog.testing.capture_logs() as logs:
            target.unlink()
            target.mkdir()  # os.replace onto a non-empty directory fails, whoever we are
            (target / "keep").touch()
            for _ in range(5):
                sup.write_status()
            (target / "keep").unlink()
            target.rmdir()
            sup.write_status()
        events = [e["event"] for e in logs if e["event"].startswith("status_file")]
        assert events == ["status_file_failed", "status_file_written_again"]
        assert read_status(state) is not None
