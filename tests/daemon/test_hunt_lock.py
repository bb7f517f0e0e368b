"""The daemon lock opened by the wrong user, or in a state dir that is not a directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.daemon.instance_lock import InstanceLock
from config.errors import UsageError
from tests.support.users import other_user


def test_run_as_a_user_who_cannot_open_the_lock_says_to_run_as_the_service_user(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700 if os.geteuid() == 0 else 0o000)
    with other_user(), pytest.raises(UsageError) as info:
        InstanceLock(state).acquire()
    message = str(info.value)
    assert str(state / "daemon.lock") in message and "Permission denied" in message
    assert "sudo -u punchgate" in message


def test_a_state_dir_that_is_a_file_is_named_in_a_usage_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    with pytest.raises(UsageError, match="is a directory that user owns"):
        InstanceLock(state).acquire()
