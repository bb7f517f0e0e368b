"""The receiver never shows a password from its ``--db`` URL or its ``--url``: not in an error
line, not in a ``--debug`` traceback, not in its reports."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import structlog
from click.testing import Result
from typer.testing import CliRunner

from agent.cli import app
from agent.localbroker import free_port
from agent.receiver import open_store
from agent.receiver.store import PostgresStore, StoreError
from config.errors import ConfigError, UsageError

SECRET = "Hr-S3cret"  # a test password, searched for in every output


@pytest.mark.parametrize(
    "db",
    [
        # $(cat db-url) of a file saved on Windows keeps the CR.
        f"postgresql://hr:{SECRET}@127.0.0.1:1/hr\r",
        f" postgresql://hr:{SECRET}@127.0.0.1:1/hr",
        # The URL the HR team's SQLAlchemy tools use, and an upper-case scheme.
        f"postgresql+psycopg://hr:{SECRET}@127.0.0.1:1/hr",
        f"PostgreSQL://hr:{SECRET}@127.0.0.1:1/hr",
        f"mysql://hr:{SECRET}@db/hr",
    ],
)
def test_a_refused_db_url_is_named_without_its_password(db: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(db)
    assert "--db" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "hr:***@127.0.0.1" in str(caught.value) or "hr:***@db" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        # A password with a '%' pasted as it is: libpq echoes the "percent-encoded token".
        f"postgresql://hr:{SECRET}%@127.0.0.1:1/hr",
        # A typo in a bracketed IPv6 address: libpq echoes the whole URI.
        f"postgresql://hr:{SECRET}@[::1/hr",
        f"postgresql://hr@127.0.0.1:1/hr?password={SECRET}%&x",
    ],
)
def test_postgres_errors_about_the_url_never_show_its_password(url: str) -> None:
    with pytest.raises(StoreError, match="cannot open the receiver database") as caught:
        PostgresStore(url)
    # What --debug prints: the error and every exception chained to it.
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_debug_traceback_of_a_bad_db_url_does_not_show_the_password(tmp_path: Path) -> None:
    """--debug prints the traceback with every chained exception: psycopg's names the token."""
    db = f"postgresql://hr:{SECRET}%@127.0.0.1:1/hr"
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--debug", "receive", "--db", db, "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "StoreError" in proc.stderr and "percent-encoded" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("userinfo", [f"hr:{SECRET}", f"hr:{SECRET}/x", f"hr:x/{SECRET}"])
def test_a_broker_url_with_a_password_is_refused_without_showing_it(
    tmp_path: Path, userinfo: str
) -> None:
    """The password in --url was never sent (paho takes --username and --password-file) and
    was printed in the banner, in every 'not connected' report and in the logs."""
    url = f"mqtt://{userinfo}@127.0.0.1:{free_port()}"
    args = ["receive", "--db", str(tmp_path / "hr.db"), "--url", url, "--duration", "0.5"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UsageError), result.output
    message = str(result.exception)
    assert "--url" in message and "--username" in message and "--password-file" in message
    assert SECRET not in message + result.output
    assert "receiving" not in result.output


def receive_with_password_file(tmp_path: Path, secret: Path) -> Result:
    url = f"mqtt://127.0.0.1:{free_port()}"
    args = ["receive", "--db", str(tmp_path / "hr.db"), "--url", url, "--username", "hr"]
    return CliRunner().invoke(app, [*args, "--password-file", str(secret), "--duration", "0.3"])


@pytest.mark.parametrize(
    ("content", "says"),
    [
        # "Passwört" saved as Latin-1 by a Windows editor: a UnicodeDecodeError traceback.
        ("Passw\xf6rt-Geheim\r\n".encode("latin-1"), "is not UTF-8 text"),
        # An empty file: the receiver logged in with an empty password, refused forever.
        (b"", "is empty"),
        (b" \r\n", "is empty"),
    ],
)
def test_an_unusable_password_file_is_refused_in_one_line_without_its_content(
    tmp_path: Path, content: bytes, says: str
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_bytes(content)
    secret.chmod(0o600)
    result = receive_with_password_file(tmp_path, secret)
    assert isinstance(result.exception, ConfigError), result.output
    message = str(result.exception)
    assert "--password-file" in message and str(secret) in message and says in message
    assert "Passw" not in message + result.output
    assert "receiving" not in result.output


def test_a_password_file_every_user_can_read_is_warned_about_naming_the_fix(
    tmp_path: Path,
) -> None:
    """The gateway warns about its own password file; the receiver read any file silently."""
    secret = tmp_path / "mqtt-password"
    secret.write_text(f"{SECRET}\n")
    secret.chmod(0o644)
    try:
        result = receive_with_password_file(tmp_path, secret)
    finally:
        structlog.reset_defaults()  # the CLI logged to the runner's stream, closed now
    assert result.exit_code == 0, result.output
    logged = result.output  # the runner's stdout and stderr: the banner, reports and logs
    assert "secret file is readable by other users" in logged
    assert f"chmod 640 {secret}" in logged
    assert SECRET not in logged


def test_a_new_sqlite_database_is_not_readable_by_every_user(tmp_path: Path) -> None:
    """It holds every employee's punches of the fleet; under the usual umask 022 it was 0644,
    its -wal and -shm too (the gateway's outbox, with the same data, is made 0640)."""
    previous = os.umask(0o022)
    try:
        store = open_store(str(tmp_path / "hr.db"))
        try:
            store.store([{"id": "gw-1", "gateway_id": "gw", "seq": 1}])
            files = sorted(tmp_path.glob("hr.db*"))
            assert [f.name for f in files] == ["hr.db", "hr.db-shm", "hr.db-wal"]
            assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
                f.name: "0o640" for f in files
            }
        finally:
            store.close()
    finally:
        os.umask(previous)


def test_an_existing_sqlite_database_keeps_the_mode_it_was_given(tmp_path: Path) -> None:
    """An operator who opened it to a reporting group on purpose is not overruled."""
    open_store(str(tmp_path / "hr.db")).close()
    (tmp_path / "hr.db").chmod(0o664)
    open_store(str(tmp_path / "hr.db")).close()
    assert (tmp_path / "hr.db").stat().st_mode & 0o777 == 0o664
