"""Two config entries pointing at one terminal (a copy-pasted address): one is named, not both."""

from __future__ import annotations

from pathlib import Path

from agent.daemon.status_file import read_status
from agent.localbroker import LocalMosquitto
from agent.wiring import build_driver
from buffer.outbox import Outbox
from tests.daemon.harness import GATEWAY, running, write_config
from tests.fleet.rig import Site, terminals
from tests.support.wait import wait_for


def test_a_terminal_configured_twice_is_read_under_one_id_and_the_other_is_named(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    device = {"poll_interval": 1, "timeout": 1}
    with terminals(10) as fleet:
        devices = fleet.devices(**device)
        # t09's entry was copied from t02's and its address never changed.
        devices[9] = {**devices[2], "id": "t09"}
        state = tmp_path / "state"
        config = write_config(tmp_path / "pg.toml", state, broker.url, devices)
        copied = fleet.sims["t02"]
        with running(config, build_driver) as second:
            sup = second.supervisor
            for n in range(3):
                copied.punch(fleet.user(2), state=n)  # distinct: same second

            def named() -> dict[str, dict[str, str]] | None:
                live = read_status(state)
                rows = {d["device_id"]: d for d in (live or {}).get("devices", [])}
                pair = [rows.get("t02", {}), rows.get("t09", {})]
                if sorted(r.get("state", "") for r in pair) == ["failed", "online"]:
                    return rows
                return None

            rows = wait_for(named, timeout=15, what="one of the two entries named as a copy")
            loser = "t09" if rows["t02"]["state"] == "online" else "t02"
            winner = "t02" if loser == "t09" else "t09"
            assert winner in (rows[loser]["last_error"] or ""), rows[loser]
            wait_for(
                lambda: sup.pool.get(winner).snapshot().stored == 3,  # type: ignore[union-attr]
                timeout=10,
                what="the terminal's punches stored",
            )
    with Outbox.open(state / "outbox.db", GATEWAY) as box:
        rows_stored = [r for r in box.list(limit=1000) if r.employee == Site.user(2)]
    assert {r.device_id for r in rows_stored} == {winner}, "one terminal's punches under one id"
