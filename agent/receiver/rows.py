"""A punch as a row of the receiver's ``punches`` table: its columns and the insert statements."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agent.receiver.errors import UnstorablePunches

# Every field of the contract's punch object, in this order; "suspect" as comma-separated text.
# Integer fields are BIGINT in PostgreSQL: it takes every value SQLite's 64-bit INTEGER takes
# (the contract bounds neither seq nor the codes, and a serial clock may print any state code).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("gateway_id", "text"),
    ("seq", "bigint"),
    ("outbox_id", "text"),  # the batch's: the numbering ``seq`` counts in (None: an old gateway's)
    ("site", "text"),
    ("device_id", "text"),
    ("device_serial", "text"),
    ("employee", "text"),
    ("card", "text"),
    ("device_time", "text"),
    ("time", "text"),
    ("time_utc", "text"),
    ("utc_offset_minutes", "bigint"),
    ("state", "text"),
    ("state_code", "bigint"),
    ("verify", "text"),
    ("verify_code", "bigint"),
    ("source", "text"),
    ("kind", "text"),
    ("void_of", "text"),
    ("operator", "text"),
    ("reason", "text"),
    ("entered_at", "text"),
    ("received_at", "text"),
    ("suspect", "text"),
    ("raw", "text"),
    ("replayed", "int"),
    ("stored_at", "text"),
)
_NAMES = ", ".join(name for name, _ in COLUMNS)
# Built from the constant COLUMNS only; every value is a bound parameter. Up to 50 rows per
# statement (multi-row VALUES): one statement step per 50 punches instead of one per punch.
ROWS_PER_INSERT = 50
# Fields a terminal's ordinary punch leaves null. Binding None costs Python's sqlite3 a failed
# adaptation, ≈ 0.5 µs a value (7 a row: a third of the insert), so rows where all of these are
# null use a statement that writes them as NULL literals and binds only the other values.
_USUALLY_NULL = ("card", "void_of", "operator", "reason", "entered_at", "suspect", "raw")


def sqlite_insert(rows: int, nulls: tuple[str, ...] = ()) -> str:
    """The insert of ``rows`` punches (duplicates ignored by id); ``nulls`` are NULL literals."""
    marks = "(" + ", ".join("NULL" if name in nulls else "?" for name, _ in COLUMNS) + ")"
    return (
        f"INSERT OR IGNORE INTO punches ({_NAMES}) VALUES "  # noqa: S608
        + ", ".join([marks] * rows)
    )


SQLITE_INSERT = sqlite_insert(1)
_COLUMN_INDEX = {name: n for n, (name, _) in enumerate(COLUMNS)}
_null_part = operator.itemgetter(*(_COLUMN_INDEX[name] for name in _USUALLY_NULL))
_bound_part = operator.itemgetter(
    *(n for n, (name, _) in enumerate(COLUMNS) if name not in _USUALLY_NULL)
)
_ALL_NULL = (None,) * len(_USUALLY_NULL)
# (statement for ROWS_PER_INSERT rows, for one row) of full rows, then of ordinary ones.
FULL_STATEMENTS = (sqlite_insert(ROWS_PER_INSERT), SQLITE_INSERT)
ORDINARY_STATEMENTS = (
    sqlite_insert(ROWS_PER_INSERT, _USUALLY_NULL),
    sqlite_insert(1, _USUALLY_NULL),
)


def split_ordinary(rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """(bound values of the rows whose ``_USUALLY_NULL`` fields are all null, the other rows)."""
    ordinary, full = [], []
    for row in rows:
        if _null_part(row) == _ALL_NULL:  # a tuple compare in C; None == None only for None
            ordinary.append(_bound_part(row))
        else:
            full.append(row)
    return ordinary, full


# Arrays unnested server-side: one statement per batch, and rowcount counts inserted rows only.
PG_INSERT = (
    "INSERT INTO punches ("  # noqa: S608
    + _NAMES
    + ") SELECT * FROM unnest("
    + ", ".join(f"%s::{kind}[]" for _, kind in COLUMNS)
    + ") ON CONFLICT (id) DO NOTHING"
)


_FIELDS = tuple(name for name, _ in COLUMNS[:-1])  # all but stored_at, in COLUMNS order
_take_fields = operator.itemgetter(*_FIELDS)
_SUSPECT = _FIELDS.index("suspect")
_REPLAYED = _FIELDS.index("replayed")


def row_of(punch: dict[str, Any], stored_at: str) -> tuple[Any, ...]:
    """The columns of one punch, in ``COLUMNS`` order."""
    try:
        # The contract's punch has every field: one C-level lookup of all of them.
        row = _take_fields(punch)
    except KeyError:
        return _row_of_partial(punch, stored_at)
    suspect, replayed = row[_SUSPECT], row[_REPLAYED]
    if type(suspect) is list and not suspect and type(replayed) is bool:
        # The usual punch: no suspect flags.
        fixed = list(row)
        fixed[_SUSPECT], fixed[_REPLAYED] = None, int(replayed)
        return (*fixed, stored_at)
    return _row_of_partial(punch, stored_at)


def rows_of(punches: Sequence[dict[str, Any]], stored_at: str) -> list[tuple[Any, ...]]:
    """The rows of ``punches``; ``UnstorablePunches`` if a field has a type no column takes.

    (``"suspect": [1]``: a TypeError here failed every punch stored with it, of every gateway.)
    """
    try:
        return [row_of(p, stored_at) for p in punches]
    except TypeError as exc:
        raise UnstorablePunches(f"cannot store punches: a field has the wrong type: {exc}") from exc


def _row_of_partial(punch: dict[str, Any], stored_at: str) -> tuple[Any, ...]:
    get = punch.get
    suspect = get("suspect")
    return (
        punch["id"],
        punch["gateway_id"],
        punch["seq"],
        get("outbox_id"),
        get("site"),
        get("device_id"),
        get("device_serial"),
        get("employee"),
        get("card"),
        get("device_time"),
        get("time"),
        get("time_utc"),
        get("utc_offset_minutes"),
        get("state"),
        get("state_code"),
        get("verify"),
        get("verify_code"),
        get("source"),
        get("kind"),
        get("void_of"),
        get("operator"),
        get("reason"),
        get("entered_at"),
        get("received_at"),
        ",".join(suspect) if isinstance(suspect, list) and suspect else None,
        get("raw"),
        1 if get("replayed") else 0,
        stored_at,
    )


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


OUTBOX_ID = _COLUMN_INDEX["outbox_id"]


def copy_of(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The parameters of ``SQLITE_COPIES`` (gaps.py) for one row: its number, in its numbering."""
    punch_id, gateway, seq, numbering = row[0], row[1], row[2], row[OUTBOX_ID] or ""
    return (gateway, numbering, seq, punch_id, gateway, seq, numbering)
