"""The daemon lock opened by the wrong user, or in a state dir that is not a directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.daemon.instance_lock import InstanceLock
from config.errors import UsageError

NOBODY = 65534


@contextmanager
def acting_as_nobody() -> Iterator[None]:
    """This process acts as a user without access to root's 0700 directory."""
    assert os.geteuid() == 0, "the suite runs as root; this test plays another user"
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def test_run_as_a_user_who_cannot_open_the_lock_says_to_run_as_the_service_user(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with acting_as_nobody(), pytest.raises(UsageError) as info:
        InstanceLock(state).acquire()
    message = str(info.value)
    assert str(state / "daemon.lock") in message and "Permission denied" in message
    assert "sudo -u punchgate" in message


def test_a_state_dir_that_is_a_file_is_named_in_a_usage_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    with pytest.raises(UsageError, match="is a directory that user owns"):
        InstanceLock(state).acquire()
