"""A reload that shortens status_interval: the status file follows the new interval at once."""

from __future__ import annotations

from pathlib import Path

from agent.daemon.status_file import read_status
from agent.localbroker import LocalMosquitto
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import running, write_config
from tests.support.wait import wait_for


def test_a_shorter_status_interval_applies_from_the_reload_not_after_the_old_interval(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "pg.toml", state, broker.url, [], agent={"status_interval": 60}
    )
    with running(config, FakeFleet().factory) as handle:
        wait_for(lambda: read_status(state), timeout=10, what="the first status")
        write_config(config, state, broker.url, [], agent={"status_interval": 0.2})
        handle.supervisor.request_reload()
        first = wait_for(
            lambda: (s := read_status(state)) and s["interval_s"] == 0.2 and s,
            timeout=10,
            what="the status written by the reload",
        )
        # The file now promises a write every 0.2 s (stale after 5.6 s): it must keep that.
        wait_for(
            lambda: (s := read_status(state)) and s["updated_unix"] > first["updated_unix"],
            timeout=4,
            what="a status written at the new interval",
        )
        status = read_status(state)
        assert status is not None and status["running"]
