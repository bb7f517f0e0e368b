"""Contract JSON of pending rows, built by SQLite: the delivery worker's hot path.

Turning rows into ``StoredPunch`` objects and those into JSON cost the MQTT drain most of its
time (datetimes parsed, then formatted again). Here SQLite writes each punch object itself
from the stored text, which already is in the contract's formats: ISO times (a UTC time with
no fraction drops the stored ``.000000``, as ``datetime.isoformat()`` does) and the local
``time`` as the terminal's wall time plus the offset.

SQLite's date functions only keep milliseconds, so the local time is taken from SQL only when
it provably equals ``device_time`` (same seconds, same fraction). Rows where that does not
hold (a DST shift), suspect rows (flags, raw bytes) are rare: their JSON is ``None`` and the
caller encodes them from the full row. The tests check every kind of row against the
contract's reference encoder.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from buffer.database import connect, read_transaction
from buffer.delivery import SPAN, over_pending, pending_rows, sent_mark
from buffer.payload_json import JSON as _JSON

_ROWS = f"SELECT seq, id, {_JSON} AS j FROM punches"  # noqa: S608 - constants
# One result row per span of pending rows (usually one per page): SQLite concatenates the
# punches itself (a newline cannot occur in its JSON, so it separates them; an empty part is a
# row SQL could not write). Python then splits and joins in C instead of handling every row.
_PAGE_SQL = (
    "SELECT group_concat(seq), group_concat(id), "  # noqa: S608 - constants
    f"CAST(group_concat(coalesce(j, x''), char(10)) AS BLOB) FROM ({_ROWS} {SPAN})"
)
_END_SQL = f"SELECT count(*), max(seq) FROM (SELECT seq FROM punches {SPAN})"  # noqa: S608

# (seq, id, contract JSON as UTF-8 bytes, ready to publish): the JSON is None when SQL cannot
# write the row exactly; the caller encodes that one from ``Outbox.get(id)``.
PayloadRow = tuple[int, str, bytes | None]
# A page of pending rows in seq order: seqs, ids and JSON parts (b"" where SQL could not
# write the row), three lists of one length.
Page = tuple[list[int], list[str], list[bytes]]


def read_page(
    conn: sqlite3.Connection,
    path: Path,
    limit: int,
    after_seq: int,
    site: str,
    sent: int | None = None,
) -> Page:
    """Pending rows after ``after_seq`` in seq order (at most ``limit``), as contract JSON.

    Rows with a seq up to ``sent`` (default: the outbox's sent mark) are ``replayed``.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    seqs: list[int] = []
    ids: list[str] = []
    parts: list[bytes] = []
    with read_transaction(conn, path, "reading the next batch"):
        if sent is None:
            sent = sent_mark(conn)
        spans = over_pending(conn, _PAGE_SQL, (site, sent), after_seq, limit, _page_rows)
    for seq_text, id_text, body in spans:  # one per span of pending rows, usually one
        if seq_text is not None:
            seqs += map(int, seq_text.split(","))
            ids += id_text.split(",")
            parts += body.split(b"\n")
    if len(seqs) == len(ids) == len(parts) and all(map(int.__lt__, seqs, seqs[1:])):
        return seqs, ids, parts
    # Never seen: an id with a comma (ids are UUID-shaped) or an aggregate that did not keep
    # the subquery's order. Read the same rows one by one rather than trust the page.
    with read_transaction(conn, path, "reading the next batch"):
        rows = pending_rows(conn, _ROWS, (site, sent), after_seq, limit)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] or b"" for r in rows]


def _page_rows(span: tuple[str | None, str | None, bytes | None]) -> int:
    return 0 if span[0] is None else span[0].count(",") + 1


def page_end(conn: sqlite3.Connection, path: Path, limit: int, after_seq: int) -> int | None:
    """The seq of the ``limit``-th pending row after ``after_seq`` (None: fewer are pending).

    Where the page after the next one starts, so that two pages can be read at once.
    """
    with read_transaction(conn, path, "finding the next page"):
        spans = over_pending(conn, _END_SQL, (), after_seq, limit, lambda span: int(span[0]))
    if sum(count for count, _top in spans) < limit:
        return None
    return max(int(top) for count, top in spans if count)


def next_payloads(
    conn: sqlite3.Connection, path: Path, limit: int, after_seq: int, site: str
) -> list[PayloadRow]:
    """``read_page`` as one tuple per row (JSON None where SQL could not write it)."""
    seqs, ids, parts = read_page(conn, path, limit, after_seq, site)
    return [(s, i, p or None) for s, i, p in zip(seqs, ids, parts, strict=True)]


class PayloadReader:
    """``read_page`` on a connection of its own, for a thread that reads while others write.

    WAL lets this reader run beside the outbox's writer; use it from one thread at a time.
    """

    def __init__(self, path: Path, busy_timeout: float, site: str) -> None:
        self.path = path
        self.site = site
        self._conn: sqlite3.Connection | None = connect(path, busy_timeout)

    def read(self, limit: int, after_seq: int, sent: int | None = None) -> Page:
        """The next page of pending rows after ``after_seq`` (see ``read_page``)."""
        if self._conn is None:
            raise ValueError("the payload reader is closed")
        return read_page(self._conn, self.path, limit, after_seq, self.site, sent)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
