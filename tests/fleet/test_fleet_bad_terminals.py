"""One site, several bad terminals at once: the good ones keep going, each bad one is named."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from agent.daemon.status_file import read_status
from agent.localbroker import LocalMosquitto
from buffer.outbox import Outbox
from drivers.zk.simulator.server import ZkSimulator
from tests.daemon.harness import GATEWAY
from tests.fleet.rig import site
from tests.support.mqtt import Collector
from tests.support.wait import wait_for

GOOD = ("t00", "t01", "t04", "t05", "t07", "t09")


def _device_status(collector: Collector, device: str) -> dict[str, object] | None:
    messages = collector.on(f"{GATEWAY}/devices/{device}/status")
    return messages[-1].json() if messages else None


def test_swapped_garbage_and_silent_terminals_are_named_and_cost_only_themselves(
    tmp_path: Path, broker: LocalMosquitto, collector: Collector
) -> None:
    with site(
        tmp_path,
        broker,
        10,
        device={"poll_interval": 1, "timeout": 1},
        agent={"status_interval": 0.2},
    ) as (terminals, handle, config):
        sup = handle.supervisor
        sims = terminals.sims
        for index, name in enumerate(sims):
            sims[name].punch(terminals.user(index))
        wait_for(
            lambda: (
                len(sup.pool.snapshots()) == 10
                and all(s.state == "online" and s.stored == 1 for s in sup.pool.snapshots())
            ),
            timeout=15,
            what="every terminal online with its first punch stored",
        )
        # t03 swapped after a repair: t05's twin (another serial, another staff) at t03's address.
        port = sims["t03"].port
        sims["t03"].stop()
        twin = ZkSimulator(port=port, serial="FLEET-OTHER").start()
        try:
            twin.add_user("9999")
            twin.punch("9999")
            sims["t08"].faults.record_size_override = 49  # garbage records
            sims["t08"].punch(terminals.user(8))
            sims["t02"].faults.silent = True
            sims["t06"].jump_clock(timedelta(days=3 * 365))  # a clock years off
            for name in GOOD:
                sims[name].punch(terminals.user(int(name[1:])), state=1)
            wait_for(
                lambda: all(sup.pool.get(n).snapshot().stored == 2 for n in GOOD),  # type: ignore[union-attr]
                timeout=10,
                what="the good terminals' second punches stored",
            )

            def named() -> dict[str, dict[str, str]] | None:
                live = read_status(tmp_path / "state")
                states = {d["device_id"]: d for d in (live or {}).get("devices", [])}
                wanted = {"t03": "failed", "t08": "unreachable", "t02": "unreachable"}
                ok = all(states.get(d, {}).get("state") == s for d, s in wanted.items())
                return states if ok else None

            devices = wait_for(named, timeout=10, what="the bad terminals named in the status file")
            wait_for(
                lambda: all(
                    (_device_status(collector, d) or {}).get("state") == "offline"
                    for d in ("t02", "t03", "t08")
                ),
                timeout=10,
                what="retained offline statuses of the bad terminals",
            )
            shown = subprocess.run(
                [
                    str(Path(sys.executable).with_name("punchgate")),
                    "status",
                    "--config",
                    str(config),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        finally:
            twin.stop()
    assert "different terminal" in (devices["t03"]["last_error"] or "") or "FLEET-OTHER" in (
        devices["t03"]["last_error"] or ""
    ), devices["t03"]
    assert devices["t08"]["last_error"] and "record" in devices["t08"]["last_error"]
    assert devices["t02"]["last_error"] and "answer" in devices["t02"]["last_error"], devices["t02"]
    for name in GOOD:
        assert devices[name]["state"] == "online", devices[name]
    wait_for(
        lambda: (
            (_device_status(collector, "t03") or {}).get("last_error")
            == devices["t03"]["last_error"]
        ),
        timeout=10,
        what="the retained status of t03 saying why",
    )
    table = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("t0")}
    assert "failed" in table["t03"] and "unreachable" in table["t08"], shown.stdout
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as box:
        rows = box.list(limit=1000)
    # Nothing of the twin's staff under t03; every good terminal's two punches, under its own id.
    assert not [r for r in rows if r.employee == "9999"]
    for name in GOOD:
        mine = [r for r in rows if r.device_id == name]
        assert {r.employee for r in mine} == {terminals.user(int(name[1:]))}
        assert len(mine) == 2
