"""The state directory deleted or replaced under a running outbox (a technician "cleaning up")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from buffer import Outbox
from config.errors import OutboxError
from tests.buffer.factory import punch, punches

GATEWAY = "gw-test"


def test_storing_punches_is_refused_once_the_state_directory_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 10), watermark={"next": 10})
        shutil.rmtree(path.parent)
        # Stored now, the punches would live only in the unlinked file: the daemon would clear
        # the terminal's log and a restart would lose them.
        with pytest.raises(OutboxError) as info:
            box.add_punches(punches(10, 10), watermark={"next": 20})
        message = str(info.value)
        assert str(path) in message and "deleted or replaced" in message
        assert "restart" in message.lower()
        with pytest.raises(OutboxError, match="deleted or replaced"):
            box.add_manual(punch(30), operator="tech", reason="forgot badge")
    # What a restart finds: no outbox where the punches were said to be stored.
    assert not path.exists()


def test_storing_punches_is_refused_when_the_outbox_file_was_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 10), watermark={"next": 10})
        moved = tmp_path / "elsewhere.db"
        path.rename(moved)
        path.mkdir()  # the state file replaced by a directory of the same name
        with pytest.raises(OutboxError, match="deleted or replaced"):
            box.add_punches(punches(10, 10), watermark={"next": 20})
        assert box.watermark("lobby-1") == {"next": 10}


def test_punches_already_stored_are_still_delivered_after_the_directory_is_deleted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        ids = box.add_punches(punches(0, 5)).ids
        shutil.rmtree(path.parent)
        batch = box.next_batch(100)
        assert {r.id for r in batch} == set(ids)
        assert box.mark_delivered([r.id for r in batch]) == 5


def test_the_status_figures_name_the_deleted_outbox_once_the_directory_is_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 3))
        shutil.rmtree(path.parent)
        path.parent.mkdir()  # the daemon's next status write creates it again
        with pytest.raises(OutboxError) as info:
            box.stats()
    # Not "check that the directory exists and the punchgate user owns it": it does.
    assert "deleted or replaced" in str(info.value) and "Restart" in str(info.value)
    assert not path.exists()  # and reading the figures created no empty outbox there


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_storing_is_refused_once_the_wal_or_its_index_was_deleted_and_a_restart_keeps_all(
    tmp_path: Path, suffix: str
) -> None:
    """``rm *-wal`` "to free space": commits went to the unlinked WAL (lost at a power cut), or
    the CLI built a second index beside the daemon's (two writers, two indexes: corruption)."""
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        kept = box.add_punches(punches(0, 10), watermark={"next": 10}).ids
        Path(str(path) + suffix).unlink()
        with pytest.raises(OutboxError) as info:
            box.add_punches(punches(10, 10), watermark={"next": 20})
        message = str(info.value)
        assert f"{path}{suffix}" in message and "deleted or replaced" in message
        assert "Restart punchgate" in message
        assert box.next_batch(100)  # what is stored is still delivered meanwhile
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:  # the restart
        assert box.recovery is None
        assert {r.id for r in box.list()} == set(kept)
        assert box.watermark("lobby-1") == {"next": 10}
        assert box.add_punches(punches(10, 10), watermark={"next": 20}).inserted == 10
