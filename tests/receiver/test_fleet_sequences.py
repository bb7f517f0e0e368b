"""A fleet's sequence numbers at the receiver: a gateway whose outbox was restored from a backup
(its numbering jumps ahead) and one re-installed from scratch (its numbering starts again),
with real outboxes and delivery workers publishing to a real broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import app
from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from agent.mqtt.contract import encode
from agent.receiver import Receiver
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches
from tests.receiver.conftest import publish, rows
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]


def _deliver(broker: LocalMosquitto, workers: Workers, outbox: Outbox) -> None:
    worker = workers(fast_options(broker.url, ack="backend", batch_size=50, ack_timeout=2), outbox)
    assert worker.flush(20), worker.status()
    assert outbox.stats().pending == 0
    worker.stop(timeout=2)


def _restored(outbox: Outbox, backup: Path) -> Outbox:
    """``outbox`` lost with its disk (its counter unreadable) and restored from ``backup``."""
    path = outbox.path
    outbox.close()
    path.rename(path.with_name("damaged.db"))
    Outbox.restore(backup, path, GATEWAY)
    return Outbox.open(path, GATEWAY)


def test_a_restored_gateway_whose_newest_punches_had_arrived_shows_a_recovery_not_a_gap(
    broker: LocalMosquitto,
    workers: Workers,
    receivers: Callable[..., Receiver],
    db: str,
    tmp_path: Path,
) -> None:
    """The gateway's outbox is restored from last night's backup after the disk failed; the
    punches stored after that backup had already reached the receiver, among them corrections a
    technician typed in, which no terminal can give back. The numbering jumps 1,000,000 past the
    backup's, so the receiver sees a jump a little smaller than 1,000,000 (by those
    corrections): that is the recovery, not 999,990 punches to ask the gateway for, forever."""
    receiver = receivers()
    path = tmp_path / "gw" / "outbox.db"
    outbox = Outbox.open(path, GATEWAY)
    outbox.add_punches(make_punches(100))
    backup = outbox.backup(tmp_path / "nightly.db")
    outbox.add_punches(make_punches(50, start=100))  # seq 101-150: delivered, then lost
    for punch in make_punches(10, start=900, device="keypad"):  # seq 151-160: the same
        outbox.add_manual(punch, operator="tech", reason="terminal was offline")
    _deliver(broker, workers, outbox)
    outbox = _restored(outbox, backup)
    try:
        # The terminals are read again (the same punches: the same ids), and new ones arrive.
        outbox.add_punches(make_punches(150 + 40))
        _deliver(broker, workers, outbox)
    finally:
        outbox.close()
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM punches") == [(200, 200)]
    gaps = receiver.store.gaps()
    assert len(gaps) == 1, gaps
    assert gaps[0].first_missing == 161 and gaps[0].recovery_jump, gaps
    assert gaps[0].missing == 0
    assert [s.missing for s in receiver.store.summary()] == [0]
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps"])
    assert result.exit_code == 0, result.output
    assert f"recovery: {GATEWAY} jumped from seq 160" in result.output
    assert "gap:" not in result.output and "ask it to re-send" not in result.output


def _gaps_text(db: str) -> str:
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps"])
    assert result.exit_code == 0, result.output
    return result.output


def test_punches_read_again_after_a_recovery_with_new_seqs_leave_no_gap_between_new_ones(
    broker: LocalMosquitto,
    workers: Workers,
    receivers: Callable[..., Receiver],
    db: str,
    tmp_path: Path,
) -> None:
    """After the restore, terminal A's punches lost with the file are read again: they get new
    seqs, between new punches of terminal B. The receiver has them (same ids) and ignores the
    copies, but their new numbers were sent to it: they are no gap (asking the gateway to
    re-send them only brings the same copies again, so the gap stayed forever)."""
    receiver = receivers()
    path = tmp_path / "gw" / "outbox.db"
    outbox = Outbox.open(path, GATEWAY)
    outbox.add_punches(make_punches(100, device="a"))
    backup = outbox.backup(tmp_path / "nightly.db")
    outbox.add_punches(make_punches(50, start=100, device="a"))  # seq 101-150
    _deliver(broker, workers, outbox)
    outbox = _restored(outbox, backup)
    try:
        outbox.add_punches(make_punches(5, device="b"))
        outbox.add_punches(make_punches(150, device="a"))  # 50 read again: new seqs
        outbox.add_punches(make_punches(5, start=5, device="b"))
        _deliver(broker, workers, outbox)
        newest = outbox.stats().last_delivered_seq
    finally:
        outbox.close()
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM punches") == [(160, 160)]
    gaps = receiver.store.gaps()
    assert [(g.first_missing, g.recovery_jump, g.missing) for g in gaps] == [(151, True, 0)]
    assert [(s.missing, s.last_seq) for s in receiver.store.summary()] == [(0, newest)]
    assert "gap:" not in _gaps_text(db)


def test_a_reinstalled_gateway_reading_old_punches_again_leaves_no_gap(
    broker: LocalMosquitto,
    workers: Workers,
    receivers: Callable[..., Receiver],
    db: str,
    tmp_path: Path,
) -> None:
    """The gateway is re-installed with the same gateway_id and an empty outbox: its numbering
    starts at 1 again. Terminal A's old punches, read again, are copies the receiver has;
    terminal B (added now) brings new ones around them. Nothing is missing."""
    receiver = receivers()
    old = Outbox.open(tmp_path / "old" / "outbox.db", GATEWAY)
    try:
        old.add_punches(make_punches(10, device="a"))  # seq 1-10
        _deliver(broker, workers, old)
    finally:
        old.close()
    new = Outbox.open(tmp_path / "new" / "outbox.db", GATEWAY)
    try:
        new.add_punches(make_punches(20, device="b"))  # seq 1-20: new punches
        new.add_punches(make_punches(10, device="a"))  # seq 21-30: copies
        new.add_punches(make_punches(5, start=20, device="b"))  # seq 31-35
        _deliver(broker, workers, new)
    finally:
        new.close()
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM punches") == [(35, 35)]
    assert receiver.store.gaps() == []
    assert "gap:" not in _gaps_text(db)


def test_a_resend_of_ten_thousand_punches_adds_no_row_and_no_gap(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    receivers: Callable[..., Receiver],
    db: str,
) -> None:
    """The backend asks for everything again (``resend`` from seq 1): the copies come back
    ``replayed`` under their own seqs; the store keeps the first copy of each, and no
    number counts as a copy under another one."""
    receiver = receivers()
    outbox.add_punches(make_punches(10_000))
    options = fast_options(broker.url, ack="backend", batch_size=100, ack_timeout=5)
    worker = workers(options, outbox)
    assert worker.flush(20), worker.status()
    request = encode({"request_id": "r1", "from_seq": 1})
    publish(broker.port, [(f"{PREFIX}/{GATEWAY}/cmd/resend", request)])
    wait_for(lambda: receiver.stats.duplicates == 10_000, timeout=20, what="the resend stored")
    assert worker.flush(20), worker.status()
    assert rows(db, "SELECT count(*), sum(replayed), min(seq), max(seq) FROM punches") == [
        (10_000, 0, 1, 10_000)
    ]
    assert rows(db, "SELECT count(*) FROM seq_copies") == [(0,)]
    assert receiver.store.gaps() == []
