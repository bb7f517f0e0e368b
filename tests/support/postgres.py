"""A private PostgreSQL cluster on loopback, started by the test suite (the receiver's PG store).

It runs Debian's ``postgresql`` server binaries (``/usr/lib/postgresql/*/bin``) with its own data
directory, port and socket directory; the packaged service, if any, is left alone. PostgreSQL
refuses to run as root, so under root every server command runs as the ``postgres`` system user
(created by the package) in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from agent.localbroker import free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: run "
    "'sudo apt-get install -y postgresql' (or bash scripts/setup.sh); the tests start their own "
    "cluster and never use the packaged service"
)
PSYCOPG_HINT = (
    "psycopg is not installed in this venv: run bash scripts/setup.sh "
    "(it installs the project with pip install -e '.[test,receiver-pg]')"
)
SERVER_USER = "postgres"  # the system user Debian's package creates; also the cluster superuser
_VERSION_DIR = re.compile(r"/postgresql/(\d+)(?:\.(\d+))?/bin$")


class PostgresUnavailable(Exception):
    """The test cluster cannot be set up or run; the message says what to do."""


def find_pg_bin(pattern: str = "/usr/lib/postgresql/*/bin") -> Path:
    """The newest PostgreSQL ``bin`` directory holding ``initdb`` and ``pg_ctl``."""
    found = []
    for directory in glob.glob(pattern):
        match = _VERSION_DIR.search(directory)
        tools = (Path(directory) / "initdb", Path(directory) / "pg_ctl")
        if match and all(os.access(tool, os.X_OK) for tool in tools):
            found.append(((int(match.group(1)), int(match.group(2) or 0)), Path(directory)))
    if not found:
        raise PostgresUnavailable(INSTALL_HINT)
    return max(found)[1]


class LocalPostgres:
    """One PostgreSQL cluster on 127.0.0.1 with trust auth, in a fresh directory under /tmp."""

    def __init__(self, *, timeout: int = 30) -> None:
        self.bin = find_pg_bin()
        self.timeout = timeout  # seconds for each pg_ctl wait (-t) and each command
        self.port = 0
        self.root: Path | None = None
        self._as_server_user: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(SERVER_USER)
            except KeyError as exc:
                raise PostgresUnavailable(
                    f"running as root, but there is no '{SERVER_USER}' system user to run the "
                    f"server as (PostgreSQL refuses root); {INSTALL_HINT}"
                ) from exc
            self._owner = (entry.pw_uid, entry.pw_gid)

    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def log_path(self) -> Path:
        return self._root() / "server.log"

    def _root(self) -> Path:
        if self.root is None:
            raise PostgresUnavailable("the test cluster is not started")
        return self.root

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` (trust auth: no password)."""
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def _command(self, argv: list[str]) -> list[str]:
        if self._owner is None:
            return argv
        if shutil.which("runuser"):
            return ["runuser", "-u", SERVER_USER, "--", *argv]
        return ["su", "-s", "/bin/sh", SERVER_USER, "-c", shlex.join(argv)]

    def _run(self, what: str, argv: list[str]) -> None:
        try:
            done = subprocess.run(
                self._command(argv),
                cwd=self._root(),  # the server user may not enter the caller's directory
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout + 15,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresUnavailable(
                f"{what} did not finish within {self.timeout + 15}s: {self._log_tail()}"
            ) from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()[-2000:]
            raise PostgresUnavailable(
                f"{what} failed (exit {done.returncode}): {output}\nserver log: {self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:].strip() or "empty"
        except (OSError, PostgresUnavailable):
            return "none"

    def start(self) -> LocalPostgres:
        """Create the cluster and start it; returns when it accepts connections."""
        # Not pytest's tmp_path: that is mode 700 under root, where the server user cannot go.
        self.root = Path(tempfile.mkdtemp(prefix="punchgate-pg-", dir="/tmp"))
        if self._owner is not None:
            os.chown(self.root, *self._owner)
        self.port = free_port()
        try:
            self._run(
                "initdb",
                [
                    str(self.bin / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    SERVER_USER,
                    "--auth-local=trust",  # the socket is in our private directory
                    "--auth-host=trust",  # the server listens on 127.0.0.1 only
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={self.root}",
                    "-c fsync=off",  # a throw-away cluster: durability buys nothing here
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                ]
            )
            self._run(
                f"pg_ctl start (port {self.port})",
                [
                    str(self.bin / "pg_ctl"),
                    "start",
                    "--pgdata",
                    str(self.data_dir),
                    "--log",
                    str(self.log_path),
                    "--wait",
                    f"--timeout={self.timeout}",
                    "-o",
                    options,
                ],
            )
        except BaseException:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        psycopg = import_psycopg()
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast: running sessions are cut) and remove its directory."""
        root, self.root = self.root, None
        if root is None:
            return
        try:
            if (root / "data" / "postmaster.pid").exists():
                self.root = root  # _run needs it
                self._run(
                    "pg_ctl stop",
                    [
                        str(self.bin / "pg_ctl"),
                        "stop",
                        "--pgdata",
                        str(root / "data"),
                        "--mode=fast",
                        "--wait",
                        f"--timeout={self.timeout}",
                    ],
                )
        finally:
            self.root = None
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def import_psycopg() -> Any:
    """The psycopg module (the ``receiver-pg`` extra), or ``PostgresUnavailable`` saying how."""
    try:
        import psycopg
        import psycopg.sql
    except ImportError as exc:
        raise PostgresUnavailable(PSYCOPG_HINT) from exc
    return psycopg
