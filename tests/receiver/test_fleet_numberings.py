"""A gateway's seq numberings at the receiver: since schema v5 each batch names its outbox's
``outbox_id``; a re-installed gateway numbers from 1 again under a new one, and an old gateway
sends none. Gaps, summaries and acks are per gateway and numbering, through a real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from typer.testing import CliRunner

from agent.cli import app
from agent.localbroker import LocalMosquitto
from agent.mqtt import Contract
from agent.receiver import Receiver
from tests.mqtt.conftest import GATEWAY, PREFIX, assert_contract
from tests.receiver.conftest import publish, rows
from tests.support.mqtt import Collector
from tests.support.wait import wait_for

OLD = "0123456789abcdef"  # the outbox before the re-install
NEW = "fedcba9876543210"  # the re-installed gateway's outbox


def _batch(
    seqs: range | list[int], numbering: str | None, *, tag: str = "", gateway: str = GATEWAY
) -> tuple[str, bytes]:
    """A ``punches`` message of ``gateway`` numbered in ``numbering`` (None: an old gateway's,
    no ``outbox_id``); ids from ``tag`` (or the numbering) and the seq: ``tag`` makes copies."""
    name = tag or numbering or "legacy"
    punches = [{"id": f"{gateway}-{name}-{s}", "gateway_id": gateway, "seq": s} for s in seqs]
    body: dict[str, Any] = {"gateway_id": gateway, "punches": punches}
    if numbering is not None:
        body["outbox_id"] = numbering
    return f"{PREFIX}/{gateway}/punches", json.dumps(body).encode()


def _send(broker: LocalMosquitto, receiver: Receiver, *batches: tuple[str, bytes]) -> None:
    """Publish ``batches`` and wait until the receiver has handled every punch of them."""
    expected = receiver.stats.punches + sum(len(json.loads(b)["punches"]) for _, b in batches)
    publish(broker.port, list(batches))
    wait_for(lambda: receiver.stats.punches >= expected, timeout=10, what="the batches stored")


def _gaps(receiver: Receiver) -> list[tuple[Any, ...]]:
    return [
        (g.gateway_id, getattr(g, "outbox_id", "?"), g.first_missing, g.last_missing)
        for g in receiver.store.gaps()
    ]


def _cli(db: str, *extra: str) -> str:
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_gap_in_a_reinstalled_gateways_new_numbering_is_reported_below_the_old_highest_seq(
    broker: LocalMosquitto, receivers: Callable[..., Receiver], db: str
) -> None:
    """The old outbox delivered seq 1-100; the re-installed gateway's seq 21-30 were lost on
    the way. Those numbers were used by the old numbering, and the gap was not reported: the
    backend never asked for the punches."""
    receiver = receivers()
    _send(broker, receiver, _batch(range(1, 101), OLD))
    _send(broker, receiver, _batch(range(1, 21), NEW), _batch(range(31, 41), NEW))
    assert rows(db, "SELECT count(*) FROM punches") == [(130,)]
    assert _gaps(receiver) == [(GATEWAY, NEW, 21, 30)]
    text = _cli(db)
    assert f"gap: {GATEWAY} (outbox {NEW}) is missing seq 21-30" in text, text
    summary = [
        (s.gateway_id, getattr(s, "outbox_id", "?"), s.punches, s.first_seq, s.last_seq, s.missing)
        for s in receiver.store.summary()
    ]
    assert summary == [(GATEWAY, OLD, 100, 1, 100, 0), (GATEWAY, NEW, 30, 1, 40, 10)]
    report = json.loads(_cli(db, "--json"))
    assert {(g["outbox_id"], g["last_seq"]) for g in report["gateways"]} == {(OLD, 100), (NEW, 40)}
    assert [(g["outbox_id"], g["first_missing"]) for g in report["gaps"]] == [(NEW, 21)]


def test_acks_name_the_outbox_id_their_punches_were_numbered_in(
    broker: LocalMosquitto, receivers: Callable[..., Receiver], contract: Contract
) -> None:
    """One commit holds punches of the old numbering (re-sent late), the new one and an old
    gateway's (no outbox_id): each ack names the numbering of its punches, or none."""
    acks = Collector(broker.url, [f"{PREFIX}/+/ack"]).start()
    try:
        receiver = receivers()
        _send(
            broker,
            receiver,
            _batch([7, 8], OLD),
            _batch([1, 2], NEW),
            _batch([5], None, gateway="gw-old"),
        )
        messages = acks.wait(lambda ms: sum(len(m.json()["ids"]) for m in ms) >= 5, what="the acks")
        got = {
            (m.json()["gateway_id"], m.json().get("outbox_id")): m.json()["ids"] for m in messages
        }
        assert got == {
            (GATEWAY, OLD): [f"{GATEWAY}-{OLD}-7", f"{GATEWAY}-{OLD}-8"],
            (GATEWAY, NEW): [f"{GATEWAY}-{NEW}-1", f"{GATEWAY}-{NEW}-2"],
            ("gw-old", None): ["gw-old-legacy-5"],
        }
        assert assert_contract(contract, messages) == 3
    finally:
        acks.stop()


def test_copies_read_again_into_a_new_numbering_at_numbers_the_old_one_used_are_no_gap(
    broker: LocalMosquitto, receivers: Callable[..., Receiver], db: str
) -> None:
    """The re-installed gateway reads terminal A's old punches again (same ids) as its seq
    11-20, which the old numbering used too: they are copies and numbers seen, no gap."""
    receiver = receivers()
    _send(broker, receiver, _batch(range(1, 101), OLD, tag="a"))
    _send(
        broker,
        receiver,
        _batch(range(1, 11), NEW),
        _batch(range(11, 21), NEW, tag="a"),  # ids a-11..a-20: the old seq 11-20's punches
        _batch(range(21, 26), NEW),
    )
    assert rows(db, "SELECT count(*) FROM punches") == [(115,)]
    assert rows(db, "SELECT count(*) FROM seq_copies") == [(10,)]
    assert _gaps(receiver) == []
    assert "gap:" not in _cli(db)


def test_an_upgraded_gateway_going_on_under_an_outbox_id_shows_only_its_real_gap(
    broker: LocalMosquitto, receivers: Callable[..., Receiver], db: str
) -> None:
    """A gateway updated to schema v5 keeps its outbox and numbering: seq 1-50 came without
    an outbox_id, 45-60 (the unacknowledged re-sent) with one. That is no gap; seq 61-65 lost on
    the way is one, in its numbering. An old gateway next to it keeps its own gap."""
    receiver = receivers()
    _send(broker, receiver, _batch(range(1, 51), None), _batch([1, 2, 4], None, gateway="gw-old"))
    _send(broker, receiver, _batch(range(45, 61), NEW, tag="legacy"))
    assert _gaps(receiver) == [("gw-old", None, 3, 3)]
    _send(broker, receiver, _batch(range(66, 71), NEW))
    assert _gaps(receiver) == [(GATEWAY, NEW, 61, 65), ("gw-old", None, 3, 3)]
    assert rows(db, "SELECT count(*) FROM punches") == [(68,)]
    assert "gap: gw-old is missing seq 3-3" in _cli(db)


def test_a_batch_whose_outbox_id_is_not_text_is_rejected_not_stored_in_a_made_up_numbering(
    broker: LocalMosquitto, receivers: Callable[..., Receiver], db: str
) -> None:
    """Without --validate too: its seqs would count in no numbering the gateway could name
    (and PostgreSQL refused the number as text, punch by punch, at every re-send)."""
    receiver = receivers()
    topic, good = _batch([1], NEW)
    body = json.loads(good)
    body["outbox_id"] = 12345
    publish(broker.port, [(topic, json.dumps(body).encode())])
    _send(broker, receiver, _batch([2], NEW))
    assert receiver.stats.rejected == 1
    assert rows(db, "SELECT id, outbox_id FROM punches") == [(f"{GATEWAY}-{NEW}-2", NEW)]
