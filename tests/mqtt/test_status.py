"""Gateway and device status: retained birth, clean offline, last will on SIGKILL, boot counter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.localbroker import LocalMosquitto
from agent.mqtt import Contract, ContractViolation, DeliveryWorker, DeviceStatus
from agent.mqtt.status import next_boot_counter
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches
from tests.support.mqtt import Collector, Message
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]
STATUS = f"{PREFIX}/{GATEWAY}/status"
ROOT = Path(__file__).resolve().parents[2]


def _retained_status(url: str, topic: str = STATUS) -> Message:
    """What a newcomer sees on ``topic``: the retained message (clean session, read once)."""
    collector = Collector(url, [topic]).start()
    try:
        return collector.wait(lambda ms: bool(ms), timeout=5, what=f"retained {topic}")[-1]
    finally:
        collector.stop()


def test_birth_is_retained_online_with_backlog_and_clean_stop_leaves_offline(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, contract: Contract
) -> None:
    outbox.add_punches(make_punches(5))
    worker = workers(fast_options(broker.url, ack="backend"), outbox, boot=12)
    wait_for(lambda: worker.connection.subscribed, timeout=5, what="connected")
    birth = _retained_status(broker.url)
    assert birth.retain and birth.qos == 1
    body = birth.json()
    assert body["state"] == "online" and body["boot"] == 12 and body["backlog"] == 5
    assert body["site"] == "Berlin HQ" and body["gateway_id"] == GATEWAY
    assert not contract.errors("gateway-status", body)
    worker.stop(timeout=1)
    offline = _retained_status(broker.url)
    assert offline.json()["state"] == "offline" and offline.json()["boot"] == 12
    assert not contract.errors("gateway-status", offline.json())
    # The clean offline message is byte-identical to the registered last will.
    assert offline.payload == worker.connection.will.payload  # type: ignore[union-attr]


def test_last_will_says_offline_when_the_agent_process_is_killed(
    broker: LocalMosquitto, tmp_path: Path, contract: Contract
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mqtt.agent_process", broker.url, str(tmp_path / "o.db"), "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready", "the agent process did not connect"
        watcher = Collector(broker.url, [STATUS]).start()
        try:
            watcher.wait(lambda ms: any(m.json()["state"] == "online" for m in ms), what="birth")
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            messages = watcher.wait(
                lambda ms: ms[-1].json()["state"] == "offline", timeout=5, what="last will"
            )
        finally:
            watcher.stop()
        will = messages[-1].json()
        assert will["boot"] == 3 and will["gateway_id"] == GATEWAY
        assert not contract.errors("gateway-status", will)
        assert _retained_status(broker.url).json()["state"] == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_retained_status_is_online_again_after_a_broker_restart_and_boot_counts_restarts(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    boot = next_boot_counter(state)
    worker = workers(fast_options(broker.url), outbox, boot=boot)
    wait_for(lambda: worker.connection.subscribed, timeout=5, what="connected")
    first = _retained_status(broker.url).json()
    broker.restart()
    wait_for(lambda: worker.status().connects >= 2, timeout=10, what="reconnect")
    body = wait_for(
        lambda: (b := _retained_status(broker.url).json())["time"] > first["time"] and b,
        timeout=5,
        what="a new birth after the broker restart",
    )
    assert body["state"] == "online" and body["boot"] == 1
    worker.stop(timeout=1)
    second = workers(fast_options(broker.url), outbox, boot=next_boot_counter(state))
    wait_for(lambda: second.connection.subscribed, timeout=5, what="second agent connected")
    wait_for(
        lambda: _retained_status(broker.url).json().get("boot") == 2,
        timeout=5,
        what="birth of the second boot",
    )


def test_device_status_is_retained_validated_and_republished_after_reconnect(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, contract: Contract
) -> None:
    worker = workers(fast_options(broker.url), outbox)
    status = DeviceStatus(
        device_id="lobby-1",
        state="online",
        last_seen=datetime(2024, 5, 1, 6, 0, tzinfo=UTC),
        clock_drift_s=1.25,
        records=1200,
        record_capacity=100_000,
        kind="zk",
        serial="ABC123",
    )
    worker.publish_device_status("lobby-1", status)
    topic = f"{PREFIX}/{GATEWAY}/devices/lobby-1/status"
    wait_for(lambda: worker.connection.subscribed, timeout=5, what="connected")
    body = _retained_status(broker.url, topic).json()
    assert body["state"] == "online" and body["records"] == 1200 and body["serial"] == "ABC123"
    assert not contract.errors("device-status", body)
    # A broker that lost its retained store (killed, no persistence saved) gets it again.
    broker.kill()
    for leftover in broker.workdir.glob("*.db"):
        leftover.unlink()
    broker.start()
    wait_for(lambda: worker.status().connects >= 2, timeout=10, what="reconnect")
    assert _retained_status(broker.url, topic).json()["device_id"] == "lobby-1"
    birth = _retained_status(broker.url).json()
    assert birth["devices"] == [{"device_id": "lobby-1", "state": "online"}]
    with pytest.raises(ContractViolation, match="state"):
        worker.publish_device_status("lobby-1", {**body, "state": "sleepy"})
    with pytest.raises(ContractViolation, match="not 'lobby-2'"):
        worker.publish_device_status("lobby-2", status)


def test_boot_counter_increments_and_survives_a_damaged_file(tmp_path: Path) -> None:
    assert [next_boot_counter(tmp_path) for _ in range(3)] == [1, 2, 3]
    (tmp_path / "boot-counter").write_text("garbage")
    assert next_boot_counter(tmp_path) == 1
