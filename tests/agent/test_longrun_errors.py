"""A night with both brokers down: the status file's recent errors still show the terminal's."""

from __future__ import annotations

from pathlib import Path

from agent.daemon.device_state import DeviceState
from agent.daemon.live_status import LAST_ERRORS
from agent.localbroker import free_port
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import running, write_config, zk_device
from tests.support.wait import wait_for


def test_alternating_failures_of_two_brokers_do_not_push_a_terminal_error_out_of_the_status(
    tmp_path: Path,
) -> None:
    fleet = FakeFleet()
    fleet.terminal("a-1").auth_fails = True  # wrong comm key: a person must act
    urls = [f"mqtt://127.0.0.1:{free_port()}", f"mqtt://127.0.0.1:{free_port()}"]
    config = write_config(
        tmp_path / "pg.toml",
        tmp_path / "state",
        "PLACEHOLDER",
        [zk_device("a-1", poll_interval=1)],
        agent={"status_interval": 0.1},
        mqtt={"reconnect_min": 0.02, "reconnect_max": 0.05},
    )
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('"PLACEHOLDER"', repr(urls).replace("'", '"')), "utf-8")
    with running(config, fleet.factory) as handle:
        sup = handle.supervisor
        wait_for(
            lambda: (w := sup.pool.get("a-1")) and w.snapshot().state == DeviceState.FAILED,
            timeout=10,
            what="a-1 failed",
        )
        # Enough status writes for every slot of the recent errors, alternating brokers.
        writes = 0

        def many_writes() -> bool:
            nonlocal writes
            sup.write_status()
            writes += 1
            delivery = sup.delivery
            assert delivery is not None
            return writes >= 3 * LAST_ERRORS and delivery.status().reconnect_attempts > 20

        wait_for(many_writes, timeout=10, what="status writes during the outage")
        sources = [e["source"] for e in sup.errors.items()]
    assert "device a-1" in sources, f"the terminal's error was pushed out by: {sources}"
    assert sources.count("broker") <= len(urls), sources
