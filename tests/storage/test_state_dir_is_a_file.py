"""A file where the state directory should be (a technician's clean-up script): a clear line."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.localbroker import free_port
from buffer import Outbox
from config.errors import OutboxError
from tests.cli.conftest import cli, write_config


def test_a_manual_punch_names_the_file_where_the_state_directory_should_be(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "punchgate.toml",
        state_dir=tmp_path / "state",
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": free_port()}],
        manual={"max_age": "7d", "duplicate_window": "1m"},
    )
    state = tmp_path / "state"
    state.write_text("rm -rf leftovers\n")
    at = (datetime.now(ZoneInfo("Europe/Berlin")) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    done = cli(
        "punch", "add", "-e", "7", "-d", "lobby-1", "--at", at, "-r", "paper", "-c", str(config)
    )
    assert done.code == OutboxError.exit_code, done
    assert str(state) in done.stderr and "not a directory" in done.stderr, done.stderr
    assert state.read_text() == "rm -rf leftovers\n"  # nothing of it replaced


def test_opening_the_outbox_under_a_file_raises_an_outbox_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("x")
    try:
        Outbox.open(tmp_path / "state" / "outbox.db", "gw-test")
    except OutboxError as exc:
        assert "not a directory" in str(exc) and str(tmp_path / "state") in str(exc)
    else:
        raise AssertionError("opened an outbox under a file")


def test_a_restore_names_the_file_where_the_state_directory_should_be(tmp_path: Path) -> None:
    config = write_config(tmp_path / "punchgate.toml", state_dir=tmp_path / "state")
    with Outbox.open(tmp_path / "old" / "outbox.db", "gw-test") as box:
        backup = box.backup(tmp_path / "outbox-backup.db")
    (tmp_path / "state").write_text("x")
    done = cli("outbox", "restore", str(backup), "--yes", "-c", str(config))
    assert done.code == OutboxError.exit_code, done
    assert "not a directory" in done.stderr and str(tmp_path / "state") in done.stderr
    assert (tmp_path / "state").read_text() == "x"
