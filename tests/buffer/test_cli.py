"""``punchgate outbox stats|check|backup|restore`` against a real outbox file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from agent.cli import app
from buffer import Outbox, list_backups
from config.errors import PunchgateError
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches


@dataclass(frozen=True)
class Outcome:
    """Exit code and output, as ``main()``'s error boundary would produce them."""

    code: int
    stdout: str
    stderr: str


def cli(*args: str) -> Outcome:
    result = CliRunner().invoke(app, list(args))
    structlog.reset_defaults()  # the CLI logged to the runner's (now closed) stderr
    exc = result.exception
    if isinstance(exc, PunchgateError):
        return Outcome(exc.exit_code, result.stdout, result.stderr + f"error: {exc}\n")
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose state_dir is in tmp_path, with 3 backups kept."""
    path = tmp_path / "punchgate.toml"
    path.write_text(
        f'[agent]\ngateway_id = "{GATEWAY}"\nstate_dir = "{tmp_path / "state"}"\n\n'
        "[outbox]\nbackup_keep = 3\ndisk_reserve_mb = 0\n"
    )
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The configured outbox, holding 10 punches of which 4 are delivered."""
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY) as box:
        box.add_punches(punches(0, 10), watermark={"next": 10})
        box.mark_delivered([r.id for r in box.next_batch(4)])
    return path


def test_stats_json_has_the_pending_count(config: Path, db: Path) -> None:
    out = cli("outbox", "stats", "--json", "--config", str(config))
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["pending"] == 6 and data["delivered"] == 4 and data["last_seq"] == 10
    assert data["devices"][0]["watermark"] == {"next": 10}


def test_stats_table_is_readable(config: Path, db: Path) -> None:
    out = cli("outbox", "stats", "--config", str(config))
    assert out.code == 0
    assert "pending" in out.stdout and "lobby-1" in out.stdout and "disk alarm" in out.stdout


def test_stats_without_an_outbox_says_where_it_looked(config: Path) -> None:
    out = cli("outbox", "stats", "--config", str(config))
    assert out.code == 5 and "no outbox at" in out.stderr


def test_check_passes_on_a_healthy_outbox(config: Path, db: Path) -> None:
    out = cli("outbox", "check", "--config", str(config))
    assert out.code == 0 and out.stdout.startswith("OK:") and "integrity_check" in out.stdout


def test_check_fails_with_a_clear_message_on_a_damaged_file(config: Path, db: Path) -> None:
    with Outbox.open(db, GATEWAY) as box:
        box.add_punches(punches(10, 3000))
    data = bytearray(db.read_bytes())
    data[30 * 4096 : 31 * 4096] = b"\x00\x01" * 2048
    db.write_bytes(bytes(data))
    out = cli("outbox", "check", "--config", str(config))
    assert out.code == 5
    assert "FAILED" in out.stderr and "To recover" in out.stderr
    assert not list(db.parent.glob("*.corrupt-*"))  # check diagnoses; it does not repair


def test_backup_default_rotates_in_the_backup_dir(config: Path, db: Path, tmp_path: Path) -> None:
    for _ in range(4):
        out = cli("outbox", "backup", "--config", str(config))
        assert out.code == 0 and "verified" in out.stdout
    assert len(list_backups(tmp_path / "state" / "backups")) == 3


def test_backup_to_a_path_then_restore_it(config: Path, db: Path, tmp_path: Path) -> None:
    target = tmp_path / "usb"
    target.mkdir()
    assert cli("outbox", "backup", str(target), "--config", str(config)).code == 0
    (copy,) = target.iterdir()
    with Outbox.open(db, GATEWAY) as box:
        box.add_punches(punches(10, 5))
    out = cli("outbox", "restore", str(copy), "--yes", "--config", str(config))
    assert out.code == 0 and "restored" in out.stdout
    assert (
        json.loads(cli("outbox", "stats", "--json", "--config", str(config)).stdout)["pending"] == 6
    )
    assert list(db.parent.glob("outbox.db.replaced-*"))


def test_restore_refuses_while_the_outbox_is_open(config: Path, db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    with Outbox.open(db, GATEWAY) as box:
        box.backup(copy)
        out = cli("outbox", "restore", str(copy), "--yes", "--config", str(config))
    assert out.code == 5 and "Stop it first" in out.stderr


def test_restore_refuses_another_gateways_backup_and_keeps_the_outbox(
    config: Path, db: Path, tmp_path: Path
) -> None:
    """Its punches would go out under this gateway's topic with another gateway's id: the
    backend refuses them and they would stay pending forever."""
    other = tmp_path / "other" / "outbox.db"
    with Outbox.open(other, "gw-other") as box:
        box.add_punches(punches(0, 3))
        box.backup(tmp_path / "other.db")
    before = db.read_bytes()
    out = cli("outbox", "restore", str(tmp_path / "other.db"), "--yes", "--config", str(config))
    assert out.code == 2 and "gw-other" in out.stderr and GATEWAY in out.stderr
    assert db.read_bytes() == before and not list(db.parent.glob("outbox.db.replaced-*"))
