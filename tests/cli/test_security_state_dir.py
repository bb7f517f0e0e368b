"""A technician's ``sudo punchgate ...`` in a state directory the service account owns: what
that account planted there must not make root hand it other files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, cli

SERVICE_UID = 65534  # nobody: the service account (punchgate) on a site


@pytest.mark.parametrize("lock", ["outbox.db.lock", "outbox.db.backup-lock"])
def test_a_symlinked_lock_file_does_not_give_its_target_to_the_service_account(
    tmp_path: Path, make_config: Callable[..., Path], lock: str
) -> None:
    """The service account (compromised, or any program running as it) links the outbox lock
    to /etc/shadow; the next 'sudo punchgate outbox stats' (or backup) opened it through the
    link and handed the target to the owner of the state directory: root for that account."""
    state = tmp_path / "state"
    with Outbox.open(state / "outbox.db", GATEWAY):
        pass
    for path in (state, *state.iterdir()):
        os.chown(path, SERVICE_UID, SERVICE_UID)
    shadow = tmp_path / "shadow"  # stands for /etc/shadow: root's, private
    shadow.write_text("root:$6$hash:19000:0:99999:7:::\n")
    shadow.chmod(0o600)
    (state / lock).unlink(missing_ok=True)
    (state / lock).symlink_to(shadow)
    config = make_config()
    command = ["outbox", "stats"] if lock == "outbox.db.lock" else ["outbox", "backup"]
    outcome = cli(*command, "--config", str(config))
    assert outcome.code != 0
    assert "symbolic link" in outcome.stderr, outcome.stderr
    st = shadow.stat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert shadow.read_text() == "root:$6$hash:19000:0:99999:7:::\n"
