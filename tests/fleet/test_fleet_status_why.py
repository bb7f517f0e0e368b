"""``punchgate status`` on a site: a terminal online but wrong says so, not only a raw figure."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from agent.daemon.status_file import read_status
from agent.localbroker import LocalMosquitto
from tests.fleet.rig import site
from tests.support.wait import wait_for


def test_status_says_why_a_terminal_with_a_clock_years_off_or_a_full_log_is_bad(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    with site(
        tmp_path,
        broker,
        10,
        device={"poll_interval": 1, "timeout": 1, "max_drift": 60},
        agent={"status_interval": 0.2},
        record_capacity=1000,
    ) as (terminals, _handle, config):
        terminals.sims["t06"].jump_clock(timedelta(days=3 * 365))
        terminals.sims["t02"].generate(users=5, records=990, seed=2)

        def seen() -> bool:
            live = read_status(tmp_path / "state")
            devices = {d["device_id"]: d for d in (live or {}).get("devices", [])}
            return (devices.get("t06", {}).get("drift_s") or 0) > 9 * 10**7 and (
                devices.get("t02", {}).get("records") == 990
            )

        wait_for(seen, timeout=15, what="the clock and the log fill in the status file")
        shown = subprocess.run(
            [str(Path(sys.executable).with_name("punchgate")), "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    rows = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("t0")}
    assert re.search(r"clock 109[45]d\S* ahead", rows["t06"]), rows["t06"]  # three years
    assert "max_drift" in rows["t06"] and "doctor" in rows["t06"], rows["t06"]
    assert "full" in rows["t02"] and "doctor" in rows["t02"], rows["t02"]
    for name in ("t00", "t01", "t03"):
        assert rows[name].rstrip().endswith("/1000"), rows[name]  # nothing to say about them
