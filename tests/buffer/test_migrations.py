"""Schema migrations: every earlier version upgrades in one transaction; newer is refused."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from buffer import SCHEMA_VERSION, Outbox
from buffer import schema as schema_module
from buffer.schema import migrate, user_version
from config.errors import SchemaTooNewError
from tests.buffer.children import run_to_end, start
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches

# A v1 row as the v1 code wrote it (no in_attempt column, no stats counters).
V1_ROW = (
    "INSERT INTO punches (seq, id, gateway_id, device_id, device_serial, employee, device_time, "
    "time_utc, utc_offset_minutes, state, verify, source, kind, received_at, delivery, "
    "delivered_at) VALUES (?, ?, 'gw-test', 'lobby-1', 'SER-1', '7', '2026-01-01T08:00:00', "
    "'2026-01-01T07:00:00.000000+00:00', 60, 'in', 'card', 'device', 'punch', "
    "'2026-01-01T07:00:01.000000+00:00', ?, ?)"
)


def _database_at(path: Path, version: int) -> None:
    """A file at schema ``version`` holding data the way that version wrote it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, target=min(version, 1))
        if version >= 1:
            for seq in range(1, 6):
                delivered = seq <= 2
                conn.execute(
                    V1_ROW,
                    (
                        seq,
                        f"00000000-0000-8000-8000-{seq:012d}",
                        "delivered" if delivered else "pending",
                        "2026-01-01T07:00:02.000000+00:00" if delivered else None,
                    ),
                )
            conn.execute("UPDATE counters SET value = 5 WHERE name = 'seq'")
            conn.execute(
                "INSERT INTO devices(device_id, serial, watermark) "
                "VALUES ('lobby-1', 'SER-1', '{\"records\": 5}')"
            )
        if version >= 2:
            migrate(conn, target=2)  # v2 counted pending/delivered from the rows
            # v2 counted every publish in attempts and stamped sent_at: rows 1-3 went out.
            conn.execute(
                "UPDATE punches SET attempts = 1, sent_at = '2026-01-01T07:00:01.5+00:00' "
                "WHERE seq <= 3"
            )
        if version >= 3:
            migrate(conn, target=3)  # v3 keeps delivery state as seq ranges
        if version >= 4:
            migrate(conn, target=4)  # v4 adds wall_ok
    finally:
        conn.close()


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_every_earlier_schema_version_upgrades_and_keeps_its_data(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "outbox.db"
    _database_at(path, version)
    with Outbox.open(path, GATEWAY) as box:
        stats = box.stats()
        assert stats.schema_version == SCHEMA_VERSION
        assert box.check() == []
        if version >= 1:
            assert (stats.pending, stats.delivered, stats.last_delivered_seq) == (3, 2, 2)
            assert box.watermark("lobby-1") == {"records": 5}
            assert [r.seq for r in box.next_batch(10)] == [3, 4, 5]
            if version >= 2:  # offered before the upgrade: still replayed after it
                assert [r.replayed for r in box.next_batch(10)] == [True, False, False]
            # Rows from before wall_ok are checked by the drain itself: same JSON as ever.
            payloads = box.next_payloads(10, site="site-1")
            assert [(seq, json.loads(text or b"")["time"]) for seq, _id, text in payloads] == [
                (seq, "2026-01-01T08:00:00+01:00") for seq in (3, 4, 5)
            ]
            delivered = box.get("00000000-0000-8000-8000-000000000002")
            assert delivered is not None and delivered.delivery == "delivered"
            assert delivered.delivered_at is not None
        added = box.add_punches(punches(0, 2))
        assert added.inserted == 2
        assert box.stats().last_seq == (7 if version >= 1 else 2)
        numbering = box.outbox_id()  # v5: the numbering the stored seqs belong to
    assert len(numbering) == 16 and int(numbering, 16) >= 0
    with Outbox.open(path, GATEWAY) as box:
        assert box.outbox_id() == numbering


def test_a_failing_step_leaves_the_database_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    _database_at(path, 1)

    def broken_step(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("step 3 failed")

    monkeypatch.setattr(
        schema_module, "MIGRATIONS", [*schema_module.MIGRATIONS, (SCHEMA_VERSION + 1, broken_step)]
    )
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(RuntimeError, match="step 3 failed"):
            migrate(conn, target=SCHEMA_VERSION + 1)
        assert user_version(conn) == 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "half_done" not in tables and "recoveries" not in tables  # v2 rolled back too
        columns = {r[1] for r in conn.execute("PRAGMA table_info(punches)")}
        assert "in_attempt" not in columns
    finally:
        conn.close()


def test_a_database_from_a_newer_punchgate_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox.open(path, GATEWAY) as box:
        box.add_punches(punches(0, 3))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SchemaTooNewError, match="newer punchgate") as info:
        Outbox.open(path, GATEWAY)
    assert "Upgrade punchgate" in str(info.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not list(tmp_path.glob("*.corrupt-*"))  # too new is not damage: nothing moved


def test_two_processes_opening_a_new_file_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    children = [
        start("insert", str(path), "--start", str(i * 1000), "--batches", "3", "--size", "10")
        for i in range(2)
    ]
    for child in children:
        run_to_end(child)
    with Outbox.open(path, GATEWAY) as box:
        assert box.stats().pending == 60 and box.check() == []
