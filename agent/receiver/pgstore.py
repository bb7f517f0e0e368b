"""The receiver's punch store in PostgreSQL (psycopg 3, the optional ``receiver-pg`` extra)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any

import structlog

from agent.receiver import gaps as report
from agent.receiver.dburl import redact_url, scrub
from agent.receiver.errors import UNSTORABLE_VALUES, StoreError, UnstorablePunches
from agent.receiver.gaps import Gap, GatewaySummary
from agent.receiver.pgdeadline import Deadline, cut
from agent.receiver.pghosts import pinned
from agent.receiver.rows import OUTBOX_ID, PG_INSERT, now_text, rows_of
from agent.receiver.schema import (
    MIGRATION_FAILED,
    create_missing,
    migrate_postgres,
    widen_integers,
)
from config.errors import ConfigError
from drivers.netaddr import LookupTimeout, Resolver

log = structlog.get_logger("receiver.store")


class PostgresStore:
    """Punches in PostgreSQL through psycopg 3 (the optional ``receiver-pg`` extra)."""

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 10.0,
        answer_timeout: float = 30.0,
        connect_timeout: int = 10,
        resolver: Resolver | None = None,
    ) -> None:
        try:
            import psycopg  # optional dependency, only for postgresql:// URLs
        except ImportError as exc:
            raise ConfigError(
                "a postgresql:// database needs psycopg: pip install 'punchgate[receiver-pg]'"
            ) from exc
        self._psycopg = psycopg
        self._url = url
        # Like SQLite's busy timeout: an insert waiting on another session's lock fails after
        # this long (logged, the batch held and tried again) instead of waiting unseen forever.
        self._lock_timeout_ms = max(1, int(lock_timeout * 1000))
        # Seconds a statement may wait for the server's answer before its connection is cut:
        # a server that never answers otherwise held the receiver forever (pgdeadline.py).
        self._answer_timeout = answer_timeout
        self._connect_timeout = connect_timeout  # seconds; libpq takes whole seconds, 2 or more
        # Host names are looked up here, within connect_timeout: psycopg's own lookup has no
        # deadline (pghosts.py). One resolver for every reconnect bounds the hung lookups.
        self._resolver = resolver or Resolver()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._conn = self._connect()
        except socket.gaierror as exc:
            raise self._lookup_failed("cannot open the receiver database", exc) from None
        except psycopg.errors.ConnectionTimeout:
            raise self._unanswered("cannot open the receiver database") from None
        except psycopg.Error as exc:
            raise self._error("cannot open the receiver database", exc) from self._cause(exc)
        deadline = Deadline(self._conn, answer_timeout)
        what = "cannot open the receiver database"
        try:
            with deadline, self._conn.cursor() as cur:
                create_missing(cur)
                widen_integers(cur)
                what = MIGRATION_FAILED
                migrate_postgres(cur)
                self._conn.commit()
        except psycopg.Error as exc:
            self._conn.close()
            if deadline.fired:
                raise self._silent(what) from None
            raise self._error(what, exc) from self._cause(exc)
        self._insert = PG_INSERT  # the whole batch in one statement; rowcount = inserted

    def _error(self, what: str, exc: Exception) -> StoreError:
        """``what: exc`` without the URL's password: libpq quotes URLs it cannot parse."""
        return StoreError(f"{what}: {scrub(str(exc), self._url)}")

    def _cause(self, exc: Exception) -> Exception | None:
        """``exc`` to chain, or None when its text holds the password (--debug prints it)."""
        return None if scrub(str(exc), self._url) != str(exc) else exc

    def _silent(self, what: str) -> StoreError:
        """The error for a statement the server did not answer within the deadline."""
        return StoreError(
            f"{what}: PostgreSQL did not answer within {self._answer_timeout:g}s (the "
            "connection is open but nothing comes back): check the database server (load, "
            "disk, locks) and the network path to it; the punches stay unacknowledged and are "
            "stored at the next try"
        )

    def _unanswered(self, what: str) -> StoreError:
        """The error for a server that did not complete the connection in time."""
        return StoreError(
            f"{what}: {redact_url(self._url)} did not complete the connection within "
            f"{self._connect_timeout}s: check that the server is up and not overloaded, and the "
            "host, port and firewall in between (a proxy may accept and never answer)"
        )

    def _lookup_failed(self, what: str, exc: socket.gaierror) -> StoreError:
        """The error for a host name in the URL that could not be looked up."""
        if isinstance(exc, LookupTimeout):
            return StoreError(
                f"{what}: the DNS server gave no answer for {exc.host!r} (the host in "
                f"{redact_url(self._url)}) within {self._connect_timeout}s: check this "
                "machine's DNS settings (/etc/resolv.conf) and its network, or write the "
                "server's IP address in the URL (or add hostaddr=<ip>, which keeps the name "
                "for TLS and .pgpass)"
            )
        return StoreError(
            f"{what}: cannot look up {exc.strerror} (a host in {redact_url(self._url)}): "
            "check the host name in the URL"
        )

    def _connect(self) -> Any:
        params = self._psycopg.conninfo.conninfo_to_dict(self._url)
        hosts: dict[str, Any] = pinned(params, self._connect_timeout, self._resolver)
        conn = self._psycopg.connect(
            self._url, autocommit=False, connect_timeout=self._connect_timeout, **hosts
        )
        with Deadline(conn, self._answer_timeout) as deadline:
            try:
                conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")  # an int: no injection
                conn.commit()
            except self._psycopg.Error:
                if deadline.fired:
                    conn.close()
                    raise self._silent("cannot set up the PostgreSQL session") from None
                raise
        return conn

    def _live(self) -> Any:
        """The connection, made again if the server ended it (a restart, a failover, an idle
        connection reaper): psycopg never reconnects by itself, and without this every later
        batch failed until the receiver was restarted. Called with the lock held."""
        if self._closed:
            raise StoreError("the receiver database (PostgreSQL) is closed")
        if self._conn.closed:
            try:
                self._conn = self._connect()
            except socket.gaierror as exc:
                raise self._lookup_failed("cannot reconnect to PostgreSQL", exc) from None
            except self._psycopg.errors.ConnectionTimeout:
                raise self._unanswered("cannot reconnect to PostgreSQL") from None
            except self._psycopg.Error as exc:
                raise self._error("cannot reconnect to PostgreSQL", exc) from self._cause(exc)
            log.info("receiver_database_reconnected")
        return self._conn

    def _rollback(self) -> None:
        """Roll back after a failed statement; on a lost connection there is nothing to undo."""
        if not self._conn.closed:
            try:
                self._conn.rollback()
            except self._psycopg.Error:
                pass  # the connection broke under us: the next call makes a new one

    def store(self, punches: Sequence[dict[str, Any]]) -> int:
        stored_at = now_text()
        rows = rows_of(punches, stored_at)
        if not rows:
            return 0
        columns = [list(column) for column in zip(*rows, strict=True)]
        with self._lock:
            return self._insert_columns(columns)

    def _insert_columns(self, columns: list[list[Any]]) -> int:
        conn = self._live()
        deadline = Deadline(conn, self._answer_timeout)
        try:
            with deadline, conn.cursor() as cur:
                cur.execute(self._insert, columns)
                inserted = cur.rowcount
                if inserted < len(columns[0]):  # copies: their numbers are no gap (gaps.py)
                    numberings = [o or "" for o in columns[OUTBOX_ID]]
                    cur.execute(report.PG_COPIES, (columns[1], numberings, columns[2], columns[0]))
                conn.commit()
        except (self._psycopg.Error, *UNSTORABLE_VALUES) as exc:
            self._rollback()
            if deadline.fired:
                raise self._silent("cannot store punches in PostgreSQL") from exc
            message = f"cannot store punches in PostgreSQL: {exc}"
            # Data (class 22: e.g. a NUL in a text), integrity and adaptation errors are about
            # the values; connection and server trouble (OperationalError, ...) are not, except
            # a program limit (54000: a value too large for its index entry), which a punch's
            # text causes and which storing it again cannot help.
            values = (
                self._psycopg.DataError,
                self._psycopg.IntegrityError,
                self._psycopg.ProgrammingError,
                self._psycopg.errors.ProgramLimitExceeded,
                *UNSTORABLE_VALUES,
            )
            if isinstance(exc, values):
                raise UnstorablePunches(message) from exc
            raise StoreError(message) from exc
        return inserted

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._live()
            deadline = Deadline(conn, self._answer_timeout)
            try:
                with deadline, conn.cursor() as cur:
                    cur.execute(sql, params)
                    rows = cur.fetchall()
                    conn.commit()
            except self._psycopg.Error as exc:
                self._rollback()
                if deadline.fired:
                    raise self._silent("cannot read from PostgreSQL") from exc
                raise StoreError(f"cannot read from PostgreSQL: {exc}") from exc
        return rows

    def gaps(self, gateway_id: str | None = None) -> list[Gap]:
        where, params = ("WHERE gateway_id = %s", (gateway_id,)) if gateway_id else ("", ())
        return report.gaps_of(self._query(report.gaps_sql(where), params * 2))

    def summary(self) -> list[GatewaySummary]:
        return report.summary_of(self._query(report.summary_sql(), ()), self.gaps())

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM punches", ())[0][0])

    def ids(self) -> list[str]:
        return [r[0] for r in self._query("SELECT id FROM punches ORDER BY gateway_id, seq", ())]

    def close(self) -> None:
        # Cancel a statement in progress first: waiting on the lock while it waits on the
        # server (a table lock) kept a stopping receiver from ever exiting. A server that does
        # not answer the cancel request either gets its connection cut.
        self._closed = True
        if not self._lock.acquire(blocking=False):
            try:
                self._conn.cancel_safe(timeout=1.0)
            except self._psycopg.Error:
                pass  # nothing running, or the connection is gone or silent: cut below
            if not self._lock.acquire(timeout=1.0):
                cut(self._conn)
                if not self._lock.acquire(timeout=5.0):
                    log.warning("receiver_database_not_closed", reason="a statement still waits")
                    return
        try:
            self._conn.close()
        finally:
            self._lock.release()
