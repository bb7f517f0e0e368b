"""Correction rows entered by technicians: manual punches and void events.

Both get random ids and ``source = "manual"``, carry the operator, reason and entry time, and
flow through delivery like any punch. A void is a row of its own (``kind = "void"``) naming
the punch it cancels: nothing is ever deleted or edited.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from buffer.identity import random_id
from buffer.records import INSERT, StoredPunch, encode_new, iso_utc, utc_now
from config.errors import UsageError
from drivers.base import Punch, Source


def manual_rows(
    gateway_id: str,
    entries: Sequence[tuple[Punch, str]],
    operator: str,
    entered_at: datetime | None,
) -> list[tuple[Any, ...]]:
    """``INSERT`` values (after seq) for manual punches, each with its reason."""
    if not operator.strip() or any(not reason.strip() for _, reason in entries):
        raise UsageError("a manual punch needs an operator and a reason")
    entered = iso_utc(entered_at or utc_now())
    received = iso_utc(utc_now())
    return [
        encode_new(
            random_id(),
            gateway_id,
            punch,
            received,
            source=Source.MANUAL.value,
            operator=operator,
            reason=reason,
            entered_at=entered,
        )
        for punch, reason in entries
    ]


def void_row(
    gateway_id: str, target: StoredPunch | None, target_id: str, operator: str, reason: str
) -> tuple[Any, ...]:
    """``INSERT`` values (after seq) for the event voiding ``target``."""
    if not operator.strip() or not reason.strip():
        raise UsageError("voiding a punch needs an operator and a reason")
    if target is None:
        raise UsageError(f"no punch with id {target_id} in the outbox (see: outbox list)")
    if target.kind == "void":
        raise UsageError(f"{target_id} is itself a void event; void the original punch")
    now = iso_utc(utc_now())
    return (
        random_id(),
        gateway_id,
        target.device_id,
        target.device_serial,
        target.employee,
        target.card,
        None if target.device_time is None else target.device_time.isoformat(),
        None if target.time_utc is None else iso_utc(target.time_utc),
        target.utc_offset_minutes,
        target.state,
        target.state_code,
        target.verify,
        target.verify_code,
        Source.MANUAL.value,
        "void",
        target.id,
        operator,
        reason,
        now,
        now,
        None,
        None,
    )


def insert_rows(
    conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], void_of: str | None = None
) -> None:
    """Number and insert correction rows; the caller holds the write transaction."""
    if void_of is not None:
        done = conn.execute(
            "SELECT id FROM punches WHERE void_of = ? AND kind = 'void' LIMIT 1", (void_of,)
        ).fetchone()
        if done is not None:
            raise UsageError(f"{void_of} is already voided by {done[0]}")
    seq = int(conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0])
    conn.executemany(INSERT, [(seq + n, *values) for n, values in enumerate(rows, 1)])
    conn.execute(
        "UPDATE counters SET value = value + ? WHERE name IN ('seq', 'pending')", (len(rows),)
    )
