"""The outbox id names a ``seq`` numbering: a new outbox gets its own, a restored one keeps it."""

from __future__ import annotations

from pathlib import Path

from buffer import Outbox
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


def test_each_new_outbox_gets_its_own_id_and_keeps_it_across_restarts(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "a" / "outbox.db", GATEWAY) as first:
        numbering = first.outbox_id()
    with Outbox.open(tmp_path / "b" / "outbox.db", GATEWAY) as reinstalled:
        # A re-installed gateway numbers from 1 again: the backend must tell the two apart.
        assert reinstalled.outbox_id() != numbering
    with Outbox.open(tmp_path / "a" / "outbox.db", GATEWAY) as again:
        assert again.outbox_id() == numbering
    assert len(numbering) == 16 and set(numbering) <= set("0123456789abcdef")


def test_a_restored_backup_keeps_the_id_of_the_numbering_it_continues(tmp_path: Path) -> None:
    path, backup = tmp_path / "outbox.db", tmp_path / "site.db"
    with Outbox.open(path, GATEWAY) as box:
        box.add_punches(punches(0, 10))
        numbering = box.outbox_id()
        box.backup(backup)
        box.add_punches(punches(10, 5))
    # Onto the same gateway's outbox, and onto a re-installed one with nothing in it: either
    # way the numbering continues past every seq given out, so the id stays.
    fresh = tmp_path / "fresh" / "outbox.db"
    for dest in (path, fresh):
        Outbox.restore(backup, dest, gateway_id=GATEWAY)
        with Outbox.open(dest, GATEWAY) as box:
            assert box.outbox_id() == numbering
            added = box.add_punches(punches(100, 1))
            assert box.get(added.ids[0]).seq > 15  # type: ignore[union-attr]
