"""Online backups while writers run, rotation, and verified restore."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from buffer import Outbox, inspect_backup, list_backups
from config.errors import OutboxError
from tests.buffer.children import read_line, run_to_end, start
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def test_backup_while_another_process_writes_is_consistent(outbox_path: Path) -> None:
    Outbox.open(outbox_path, GATEWAY).close()
    writer = start("insert", str(outbox_path), "--batches", "60", "--size", "100")
    copies = []
    with Outbox.open(outbox_path, GATEWAY) as box:
        assert read_line(writer, timeout=60) == "open"
        assert (read_line(writer, timeout=60) or "").startswith("committed")
        for i in range(3):
            copies.append(box.backup(outbox_path.parent / f"copy-{i}.db"))
    run_to_end(writer)
    for copy in copies:
        info = inspect_backup(copy)
        assert info.rows >= 100 and info.last_seq == info.rows
        with Outbox.open(copy, GATEWAY) as restored:
            # A consistent snapshot: the watermark covers exactly the rows in the copy.
            assert restored.watermark("lobby-1") == {"next": info.rows}
            assert restored.check() == []
        assert not Path(str(copy) + ".partial").exists()


def test_rotating_backups_keep_the_newest_copies(outbox: Outbox, tmp_path: Path) -> None:
    directory = tmp_path / "backups"
    made = []
    for n in range(4):
        outbox.add_punches(punches(n * 10, 10))
        made.append(outbox.backup_rotating(directory, keep=2))
    (directory / "notes.txt").write_text("not ours")  # foreign files are left alone
    assert list_backups(directory) == [made[3], made[2]]
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [made[2].name, made[3].name, "notes.txt"]
    )
    assert inspect_backup(made[3]).rows == 40


def test_restore_replaces_the_outbox_and_keeps_the_old_file(
    outbox_path: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "site.db"
    with Outbox.open(outbox_path, GATEWAY) as box:
        box.add_punches(punches(0, 10), watermark={"next": 10})
        box.backup(backup)
        box.add_punches(punches(10, 5), watermark={"next": 15})
        with pytest.raises(OutboxError, match="open in another process"):
            Outbox.restore(backup, outbox_path)
    old = hashlib.sha256(outbox_path.read_bytes()).hexdigest()
    Outbox.restore(backup, outbox_path)
    kept = list(outbox_path.parent.glob("outbox.db.replaced-*"))
    assert len(kept) == 1 and hashlib.sha256(kept[0].read_bytes()).hexdigest() == old
    with Outbox.open(outbox_path, GATEWAY) as box:
        assert len(box.list()) == 10 and box.watermark("lobby-1") == {"next": 10}
        assert box.check() == []


def test_restore_refuses_a_damaged_or_foreign_file_and_changes_nothing(
    outbox_path: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "site.db"
    with Outbox.open(outbox_path, GATEWAY) as box:
        box.add_punches(punches(0, 2000))
        box.backup(backup)
    data = bytearray(backup.read_bytes())
    data[40 * 4096 : 41 * 4096] = b"\xff" * 4096
    backup.write_bytes(bytes(data))
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    before = hashlib.sha256(outbox_path.read_bytes()).hexdigest()
    with pytest.raises(OutboxError, match="damaged"):
        Outbox.restore(backup, outbox_path)
    with pytest.raises(OutboxError, match="not a punchgate outbox"):
        Outbox.restore(foreign, outbox_path)
    with pytest.raises(OutboxError, match="does not exist"):
        Outbox.restore(tmp_path / "missing.db", outbox_path)
    assert hashlib.sha256(outbox_path.read_bytes()).hexdigest() == before
    assert not list(outbox_path.parent.glob("outbox.db.replaced-*"))
