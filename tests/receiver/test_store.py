"""The receiver's store on every backend: rows as sent, idempotent inserts, gap reports, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.mqtt.contract import punch_payload
from agent.receiver import open_store
from agent.receiver.store import PostgresStore, SqliteStore, UnstorablePunches
from buffer.outbox import Outbox
from tests.buffer.factory import invalid_time_punch
from tests.mqtt.conftest import make_punches
from tests.receiver.conftest import is_postgres, row_of_sent, rows, stored_rows


def _punch(gateway: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"{gateway}-{seq}", "gateway_id": gateway, "seq": seq, **fields}


def test_the_store_inserts_new_ids_once_even_when_a_batch_repeats_one(db: str) -> None:
    store = open_store(db)
    try:
        assert isinstance(store, PostgresStore if is_postgres(db) else SqliteStore)
        big = 2**40  # seq is BIGINT: a gateway's sequence outlives 32 bits
        assert store.store([_punch("gw-a", 1, utc_offset_minutes=-330), _punch("gw-a", 2)]) == 2
        batch = [_punch("gw-a", 2), _punch("gw-a", 3), _punch("gw-a", 3), _punch("gw-a", big)]
        assert store.store(batch) == 2
        assert store.store([]) == 0
        assert store.count() == 4
        assert store.ids() == ["gw-a-1", "gw-a-2", "gw-a-3", f"gw-a-{big}"]
        assert rows(db, "SELECT utc_offset_minutes FROM punches WHERE seq = 1") == [(-330,)]
        assert rows(db, "SELECT max(seq) FROM punches") == [(big,)]
    finally:
        store.close()


def test_every_field_of_ordinary_manual_suspect_and_void_punches_is_stored_as_sent(
    db: str, outbox: Outbox
) -> None:
    """Ordinary punches take SQLite's insert with NULL literals; the others bind every field."""
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
    store = open_store(db)
    try:
        assert store.store(sent) == 116
        assert store.store(sent[::-1]) == 0  # again, in any order: nothing new
    finally:
        store.close()
    stored = stored_rows(db)
    assert len(stored) == len(sent)
    expected = [
        {**row_of_sent(p), "stored_at": row["stored_at"]}
        for p, row in zip(sent, stored, strict=True)
    ]
    assert stored == expected
    # What each kind of row carries, so both of SQLite's statements are exercised.
    assert sum(1 for r in stored if r["suspect"] or r["card"] or r["operator"]) == 5
    assert {r["kind"] for r in stored} == {"punch", "void"}
    assert all(isinstance(r["stored_at"], str) and r["stored_at"] for r in stored)


def test_gaps_are_reported_per_gateway_by_the_store_and_the_cli(db: str) -> None:
    store = open_store(db)
    try:
        assert store.store([_punch("gw-a", s) for s in (1, 2, 5, 6, 9)]) == 5
        assert store.store([_punch("gw-b", s) for s in (3, 4)] + [_punch("gw-a", 1)]) == 2
        gaps = [(g.gateway_id, g.first_missing, g.last_missing) for g in store.gaps()]
        assert gaps == [("gw-a", 3, 4), ("gw-a", 7, 8), ("gw-b", 1, 2)]
        assert [(g.gateway_id, g.first_missing) for g in store.gaps("gw-b")] == [("gw-b", 1)]
        summary = {s.gateway_id: (s.punches, s.last_seq, s.missing) for s in store.summary()}
        assert summary == {"gw-a": (5, 9, 4), "gw-b": (2, 4, 2)}
    finally:
        store.close()
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps"])
    assert result.exit_code == 0, result.output
    assert "gw-a is missing seq 7-8 (2)" in result.output
    assert "cmd/resend" in result.output
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    expected = {"gateway_id": "gw-b", "first_missing": 1, "last_missing": 2, "count": 2}
    expected["outbox_id"] = None  # punches of a gateway that names no numbering
    assert {**expected, "missing": 2, "recovery_jump": False} in data["gaps"]
    assert {g["gateway_id"]: g["missing"] for g in data["gateways"]} == {"gw-a": 4, "gw-b": 2}


def test_the_jump_after_a_gateway_recovery_is_not_reported_missing(db: str) -> None:
    store = open_store(db)
    jump = 1_000_000  # buffer.recovery.SEQ_GAP_AFTER_LOSS, as the contract says
    seqs = [1, 2, 3, 5, 7 + jump, 8 + jump]  # 4 missing; 6 was lost with the damaged file
    try:
        store.store([{"id": f"gw-{s}", "gateway_id": "gw", "seq": s} for s in seqs])
        gaps = store.gaps()
        assert [(g.first_missing, g.last_missing, g.recovery_jump) for g in gaps] == [
            (4, 4, False),
            (6, 6 + jump, True),
        ]
        assert [g.missing for g in gaps] == [1, 1]
        assert [s.missing for s in store.summary()] == [2]
    finally:
        store.close()
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps"])
    assert result.exit_code == 0, result.output
    assert "gw is missing seq 4-4 (1)" in result.output
    assert f"gw jumped from seq 5 to {7 + jump}" in result.output
    assert "1 number(s) before it were lost" in result.output


def test_the_cli_says_when_nothing_is_stored_yet(db: str) -> None:
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps"])
    assert result.exit_code == 0, result.output
    assert "no punches stored yet" in result.output
    result = CliRunner().invoke(app, ["receive", "--db", db, "--gaps", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"gateways": [], "gaps": []}


def test_integers_of_the_contract_keep_64_bits_on_every_backend(db: str) -> None:
    """The contract bounds neither seq nor the codes (a serial clock may print any decimal state
    code): PostgreSQL takes every integer SQLite takes, and gives it back the same."""
    store = open_store(db)
    try:
        wide = _punch("gw-a", 2**62, state_code=2**31, verify_code=-(2**31) - 1)
        widest = _punch("gw-a", 1, state_code=2**63 - 1, utc_offset_minutes=-(2**63))
        assert store.store([wide, widest]) == 2
    finally:
        store.close()
    sql = "SELECT seq, state_code, verify_code, utc_offset_minutes FROM punches ORDER BY seq"
    assert rows(db, sql) == [(1, 2**63 - 1, None, -(2**63)), (2**62, 2**31, -(2**31) - 1, None)]


def test_a_batch_the_database_cannot_take_is_refused_whole_and_the_store_stays_usable(
    db: str,
) -> None:
    """Integers beyond 64 bits and lone surrogates (both valid JSON) raise StoreError on every
    backend, so the receiver retries and logs them as a store failure; nothing of the batch
    is stored and the next batch is."""
    store = open_store(db)
    try:
        good = _punch("gw-a", 1)
        for bad in (
            _punch("gw-a", 2**63),
            _punch("gw-a", 2, card="\ud800"),
            _punch("gw-a", 3, verify_code=2**64),
        ):
            with pytest.raises(UnstorablePunches, match="cannot store punches"):
                store.store([good, bad])
            assert store.count() == 0
        assert store.store([good]) == 1
        assert store.ids() == ["gw-a-1"]
    finally:
        store.close()
