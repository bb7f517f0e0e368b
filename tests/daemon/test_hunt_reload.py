"""Reloads from the field: a config that parses but cannot run must not stop the daemon."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from agent.daemon.device_state import DeviceState
from agent.localbroker import LocalMosquitto
from tests.daemon.fakes import FakeFleet
from tests.daemon.harness import GATEWAY, PREFIX, running, write_config, zk_device
from tests.support.mqtt import Collector
from tests.support.wait import wait_for


def _events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in list(logs) if e["event"] == name]


def test_a_reload_naming_a_missing_ca_file_is_rejected_and_delivery_goes_on(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    fleet = FakeFleet()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "pg.toml", state, broker.url, [zk_device("a-1", poll_interval=1, live=True)]
    )
    sub = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/punches"]).start()
    try:
        with running(config, fleet.factory) as handle:
            sup = handle.supervisor
            wait_for(
                lambda: (
                    (w := sup.pool.get("a-1")) is not None
                    and w.snapshot().state == DeviceState.ONLINE
                ),
                timeout=10,
                what="a-1 online",
            )
            # The technician switches to TLS before copying the CA file over: the file parses.
            tls_url = broker.url.replace("mqtt://", "mqtts://")
            missing = tmp_path / "ca-not-copied-yet.pem"
            write_config(
                config,
                state,
                tls_url,
                [zk_device("a-1", poll_interval=1, live=True)],
                mqtt={"ca_file": str(missing)},
            )
            with structlog.testing.capture_logs() as logs:
                sup.request_reload()
                wait_for(
                    lambda: _events(logs, "config_reload_rejected") or not handle.thread.is_alive(),
                    timeout=10,
                    what="the reload outcome",
                )
            assert handle.thread.is_alive(), f"the daemon stopped on a reload: {handle.error!r}"
            rejected = _events(logs, "config_reload_rejected")
            assert len(rejected) == 1 and str(missing) in "\n".join(rejected[0]["problems"])
            assert sup.settings.mqtt.urls == [broker.url]  # the running config stays in effect
            fleet.terminal("a-1").punch("7001", live=True)
            sub.wait(
                lambda ms: any(p["employee"] == "7001" for m in ms for p in m.json()["punches"]),
                timeout=10,
                what="a punch delivered over the running connection",
            )
    finally:
        sub.stop()
