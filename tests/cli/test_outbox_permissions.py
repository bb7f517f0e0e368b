"""The outbox commands run as the wrong user: a clear permission message, never a traceback."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, cli, write_config
from tests.cli.test_outbox_inspect import punch
from tests.support.users import other_user


@pytest.fixture
def site() -> Iterator[Path]:
    """A config any user may read, and an outbox only root may open (mode 0700 state dir)."""
    # pytest's tmp_path is private to its user; the other user must reach the config file.
    root = Path(tempfile.mkdtemp(prefix="punchgate-perm-"))
    try:
        root.chmod(0o755)
        config = write_config(root / "punchgate.toml", state_dir=root / "state")
        config.chmod(0o644)
        with Outbox.open(root / "state" / "outbox.db", GATEWAY) as outbox:
            outbox.add_punches([punch("lobby-1", "7", 3)])
        yield root
    finally:
        (root / "state").chmod(0o700)
        shutil.rmtree(root)


@pytest.mark.parametrize("state_mode", [0o700, 0o755])
@pytest.mark.parametrize(
    "command", [["outbox", "list"], ["outbox", "stats"], ["outbox", "export"], ["status"]]
)
def test_a_user_without_access_gets_a_permission_message_and_exit_2(
    site: Path, command: list[str], state_mode: int
) -> None:
    state = site / "state"
    (state / "outbox.db").chmod(0o600)
    state.chmod(state_mode if os.geteuid() == 0 else 0o000)
    with other_user():
        result = cli(*command, "-c", str(site / "punchgate.toml"))
    assert result.code == 2, result
    assert "permission denied" in result.stderr
    assert "Traceback" not in result.stderr
