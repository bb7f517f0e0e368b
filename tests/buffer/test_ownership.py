"""A root CLI run leaves outbox files the service user can still open."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from buffer import Outbox
from config.errors import OutboxError


def test_new_outbox_files_belong_to_the_state_directory_owner(tmp_path: Path) -> None:
    """As root (sudo punchgate ...), new files go to the service user who owns the directory."""
    state = tmp_path / "state"
    state.mkdir()
    expected = os.geteuid()
    if expected == 0:  # only root can hand files over; CI and the gateways' technicians are root
        nobody = pwd.getpwnam("nobody")
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        expected = nobody.pw_uid
    ob = Outbox.open(state / "outbox.db", "gw-1")
    try:
        owners = {p.name: p.stat().st_uid for p in state.iterdir()}
    finally:
        ob.close()
    assert {"outbox.db", "outbox.db.lock", "outbox.db-wal"} <= set(owners)
    assert set(owners.values()) == {expected}, owners


def test_files_in_a_root_owned_directory_stay_with_their_creator(tmp_path: Path) -> None:
    ob = Outbox.open(tmp_path / "outbox.db", "gw-1")
    try:
        assert (tmp_path / "outbox.db").stat().st_uid == os.geteuid()
    finally:
        ob.close()


def test_a_lock_file_that_cannot_be_opened_is_an_outbox_error_saying_what_to_do(
    tmp_path: Path,
) -> None:
    """What a technician gets running as a user who may not write the state directory (here a
    directory stands where the lock file goes: root ignores permissions)."""
    (tmp_path / "outbox.db.lock").mkdir()
    with pytest.raises(OutboxError, match=r"cannot open the outbox lock.*state directory"):
        Outbox.open(tmp_path / "outbox.db", "gw-1")
