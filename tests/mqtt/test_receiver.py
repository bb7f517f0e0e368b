"""The reference receiver: exactly once in its database with backend acks, gaps, rejects, CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from agent.cli import app
from agent.localbroker import LocalMosquitto
from agent.mqtt import Contract, DeliveryWorker, MqttOptions
from agent.mqtt.contract import punch_payload
from agent.receiver import Receiver, open_store
from agent.receiver.store import COLUMNS, SqliteStore
from buffer.outbox import Outbox
from tests.buffer.factory import invalid_time_punch
from tests.mqtt.conftest import GATEWAY, PREFIX, assert_contract, fast_options, make_punches
from tests.support.mqtt import Collector
from tests.support.process import ctrl_c_after_banner
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receivers(broker: LocalMosquitto) -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(store: SqliteStore, client_id: str = "receiver-1", **kwargs: object) -> Receiver:
        options = MqttOptions(
            urls=(broker.url,), client_id=client_id, reconnect_min=0.02, reconnect_max=0.2
        )
        receiver = Receiver(options, store, name=client_id, **kwargs).start()  # type: ignore[arg-type]
        wait_for(lambda: receiver.connection.subscribed, timeout=5, what="receiver subscribed")
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:  # stop first: a store must not close under a running receiver
        receiver.stop(2)
    for receiver in made:
        receiver.store.close()


def _publish(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_backend_ack_mode_stores_every_punch_exactly_once_across_a_broker_restart(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    receivers: Callable[..., Receiver],
    tmp_path: Path,
    contract: Contract,
) -> None:
    store = SqliteStore(tmp_path / "hr.db")
    acks = Collector(broker.url, [f"{PREFIX}/+/ack"]).start()
    try:
        receiver = receivers(store)
        outbox.add_punches(make_punches(5000))
        worker = workers(
            fast_options(broker.url, ack="backend", batch_size=50, ack_timeout=2), outbox
        )
        wait_for(lambda: store.count() >= 1000, timeout=10, what="first thousand stored")
        broker.restart()
        outbox.add_punches(make_punches(1000, start=5000))
        worker.wake()
        assert worker.flush(20), worker.status()
        assert store.count() == 6000
        assert set(store.ids()) == {p.id for p in outbox.list(limit=10_000)}
        assert store.gaps() == []
        assert receiver.stats.rejected == 0
        assert outbox.stats().pending == 0
        assert assert_contract(contract, acks.messages) > 0
    finally:
        acks.stop()


def test_two_receivers_in_one_group_split_the_stream_and_store_each_punch_once(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    receivers: Callable[..., Receiver],
    tmp_path: Path,
) -> None:
    first, second = SqliteStore(tmp_path / "hr.db"), SqliteStore(tmp_path / "hr.db")
    a = receivers(first, client_id="receiver-a")
    b = receivers(second, client_id="receiver-b")
    outbox.add_punches(make_punches(3000))
    worker = workers(fast_options(broker.url, ack="backend", batch_size=20), outbox)
    assert worker.flush(20)
    assert first.count() == 3000
    assert a.stats.messages > 0 and b.stats.messages > 0, "the group did not share the load"
    assert a.stats.inserted + b.stats.inserted == 3000


def test_gaps_are_reported_per_gateway_by_the_store_and_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "hr.db"
    store = SqliteStore(db)

    def punch(gateway: str, seq: int) -> dict[str, object]:
        return {"id": f"{gateway}-{seq}", "gateway_id": gateway, "seq": seq}

    assert store.store([punch("gw-a", s) for s in (1, 2, 5, 6, 9)]) == 5
    assert store.store([punch("gw-b", s) for s in (3, 4)] + [punch("gw-a", 1)]) == 2
    gaps = [(g.gateway_id, g.first_missing, g.last_missing) for g in store.gaps()]
    assert gaps == [("gw-a", 3, 4), ("gw-a", 7, 8), ("gw-b", 1, 2)]
    assert [(g.gateway_id, g.first_missing) for g in store.gaps("gw-b")] == [("gw-b", 1)]
    summary = {s.gateway_id: (s.punches, s.last_seq, s.missing) for s in store.summary()}
    assert summary == {"gw-a": (5, 9, 4), "gw-b": (2, 4, 2)}
    store.close()
    result = CliRunner().invoke(app, ["receive", "--db", str(db), "--gaps"])
    assert result.exit_code == 0, result.output
    assert "gw-a is missing seq 7-8 (2)" in result.output
    assert "cmd/resend" in result.output
    result = CliRunner().invoke(app, ["receive", "--db", str(db), "--gaps", "--json"])
    data = json.loads(result.output)
    assert {
        "gateway_id": "gw-b",
        "first_missing": 1,
        "last_missing": 2,
        "count": 2,
        "missing": 2,
        "recovery_jump": False,
    } in data["gaps"]


def test_every_field_of_ordinary_manual_and_suspect_punches_is_stored_as_sent(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Ordinary punches take the insert with NULL literals; the others bind every field."""
    outbox.add_punches(make_punches(60))
    outbox.add_punches([invalid_time_punch()])
    outbox.add_punches([replace(p, card="C-77") for p in make_punches(2, start=100)])
    outbox.add_punches(make_punches(51, start=200))
    manual = outbox.add_manual(
        make_punches(1, start=300)[0], operator="tech-anna", reason="terminal offline"
    )
    outbox.add_void(manual.id, operator="tech-anna", reason="entered twice")
    sent = [punch_payload(r, "Berlin HQ") for r in outbox.next_batch(1000)]
    assert len(sent) == 116
    store = SqliteStore(tmp_path / "hr.db")
    try:
        assert store.store(sent) == 116
        assert store.store(sent[::-1]) == 0  # again, in any order: nothing new
        conn = sqlite3.connect(tmp_path / "hr.db")
        try:
            names = [name for name, _ in COLUMNS]
            sql = f"SELECT {', '.join(names)} FROM punches ORDER BY seq"  # noqa: S608 - constants
            rows = conn.execute(sql).fetchall()
        finally:
            conn.close()
        stored = [dict(zip(names, row, strict=True)) for row in rows]
        assert len(stored) == len(sent)
        expected = [
            {**row_of_sent(p), "stored_at": row["stored_at"]}
            for p, row in zip(sent, stored, strict=True)
        ]
        assert stored == expected
        # What each kind of row carries, so both statements are exercised.
        assert sum(1 for r in stored if r["suspect"] or r["card"] or r["operator"]) == 5
        assert {r["kind"] for r in stored} == {"punch", "void"}
    finally:
        store.close()


def row_of_sent(punch: dict[str, object]) -> dict[str, object]:
    """A stored row as the contract's punch says it should be (suspect as text, flags as 0/1)."""
    row = {name: punch.get(name) for name, _ in COLUMNS if name != "stored_at"}
    suspect = punch.get("suspect")
    row["suspect"] = ",".join(suspect) if isinstance(suspect, list) and suspect else None
    row["replayed"] = 1 if punch.get("replayed") else 0
    return row


def test_the_jump_after_a_gateway_recovery_is_not_reported_missing(tmp_path: Path) -> None:
    db = tmp_path / "hr.db"
    store = SqliteStore(db)
    jump = 1_000_000  # buffer.recovery.SEQ_GAP_AFTER_LOSS, as the contract says
    seqs = [1, 2, 3, 5, 7 + jump, 8 + jump]  # 4 missing; 6 was lost with the damaged file
    store.store([{"id": f"gw-{s}", "gateway_id": "gw", "seq": s} for s in seqs])
    gaps = store.gaps()
    assert [(g.first_missing, g.last_missing, g.recovery_jump) for g in gaps] == [
        (4, 4, False),
        (6, 6 + jump, True),
    ]
    assert [g.missing for g in gaps] == [1, 1]
    assert [s.missing for s in store.summary()] == [2]
    store.close()
    result = CliRunner().invoke(app, ["receive", "--db", str(db), "--gaps"])
    assert result.exit_code == 0, result.output
    assert "gw is missing seq 4-4 (1)" in result.output
    assert f"gw jumped from seq 5 to {7 + jump}" in result.output
    assert "1 number(s) before it were lost" in result.output


def test_receiver_drops_malformed_and_foreign_batches_and_keeps_going(
    broker: LocalMosquitto, receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "hr.db")
    receiver = receivers(store)
    _publish(broker.port, f"{PREFIX}/{GATEWAY}/punches", b"{broken")
    forged = {"gateway_id": "gw-2", "punches": [{"id": "x", "seq": 1, "gateway_id": "gw-2"}]}
    _publish(broker.port, f"{PREFIX}/{GATEWAY}/punches", json.dumps(forged).encode())
    good = {"gateway_id": GATEWAY, "punches": [{"id": "y", "seq": 1, "gateway_id": GATEWAY}]}
    _publish(broker.port, f"{PREFIX}/{GATEWAY}/punches", json.dumps(good).encode())
    wait_for(lambda: store.count() == 1, timeout=5, what="the good batch")
    assert store.ids() == ["y"]
    assert receiver.stats.rejected == 2


def test_open_store_refuses_other_url_schemes(tmp_path: Path) -> None:
    from config.errors import ConfigError

    with pytest.raises(ConfigError, match="postgresql://"):
        open_store("mysql://db/hr")
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert store.count() == 0
    store.close()


def test_punchgate_receive_command_stores_and_acks_until_sigterm(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, tmp_path: Path
) -> None:
    db = tmp_path / "hr.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from agent.cli import main; main()",
            "--log-level",
            "warning",
            "receive",
            "--url",
            broker.url,
            "--db",
            str(db),
            "--client-id",
            "cli-receiver",
            "--validate",
            "--duration",
            "60",
            "--report-interval",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"receiving $share/punchgate/punchgate/v1/+/")
        outbox.add_punches(make_punches(300))
        worker = workers(fast_options(broker.url, ack="backend", ack_timeout=1), outbox)
        assert worker.flush(15), "the CLI receiver did not acknowledge the punches"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        assert b"'inserted': 300" in out
        assert b"gw-1" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    store = SqliteStore(db)
    assert store.count() == 300
    store.close()


def test_ctrl_c_right_after_the_receive_banner_stops_cleanly(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    """Ctrl-C as soon as the banner is out ends with the report and exit code 0.

    A KeyboardInterrupt used to land before the loop: exit 130 and no report, in 2-4 of 6
    runs from a shell (the simulator's twin test catches the same fault every time).
    """
    punchgate = Path(sys.executable).with_name("punchgate")  # as a technician starts it
    for attempt in range(4):  # bounded: each run is a fresh process
        args = ["--url", broker.url, "--db", str(tmp_path / f"hr-{attempt}.db")]
        code, banner, out, err = ctrl_c_after_banner([str(punchgate), "receive", *args])
        assert banner.startswith("receiving ")
        assert code == 0, err
        assert "stopped; stats:" in out
