"""Values the outbox hands out (``StoredPunch``, ``AddResult``) and their row encoding."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from buffer.ledger import DELIVERED_AT_SQL, REPLAYED_SQL
from config.errors import OutboxError
from drivers.base import Punch

# Column order shared by every SELECT that builds a StoredPunch.
COLUMNS = (
    "id",
    "seq",
    "gateway_id",
    "device_id",
    "device_serial",
    "employee",
    "card",
    "device_time",
    "time_utc",
    "utc_offset_minutes",
    "state",
    "state_code",
    "verify",
    "verify_code",
    "source",
    "kind",
    "void_of",
    "operator",
    "reason",
    "entered_at",
    "received_at",
    "delivery",
    "attempts",
    "last_error",
    "delivered_at",
    "suspect",
    "raw",
)


# Delivery state is not a column (see buffer/ledger.py): "delivery" is selected as NULL and
# filled in by decode() from "delivered_at", which the ledger's subquery gives once per row.
def _select(delivered_at: str) -> str:
    expressions = {"delivery": "NULL", "delivered_at": delivered_at}
    return (
        "SELECT "  # noqa: S608 - constant columns and expressions
        + ", ".join(expressions.get(c, c) for c in COLUMNS)
        + f", {REPLAYED_SQL} FROM punches"
    )


SELECT = _select(DELIVERED_AT_SQL)
# For rows known to be pending (read between delivered ranges): no per-row range lookup.
SELECT_PENDING = _select("NULL")
# The columns a punches row physically has, in COLUMNS order (no delivery state).
STORED_COLUMNS = tuple(c for c in COLUMNS if c not in ("delivery", "delivered_at"))

# Column order of a new row; the values come from encode_new() with seq first. A new row has
# no delivery state yet (the columns from "delivery" to "delivered_at" take their defaults).
INSERT_COLUMNS = (
    "seq",
    "id",
    *COLUMNS[COLUMNS.index("gateway_id") : COLUMNS.index("delivery")],
    "suspect",
    "raw",
)
_COLS = ", ".join(INSERT_COLUMNS)
_MARKS = ", ".join("?" for _ in INSERT_COLUMNS)
INSERT = f"INSERT INTO punches ({_COLS}) VALUES ({_MARKS})"  # noqa: S608 - constants only


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def iso_utc(value: datetime) -> str:
    """Aware time as a fixed-width ISO string in UTC, so text order is time order."""
    if value.tzinfo is None:
        raise ValueError("the outbox stores aware times only; got a naive datetime")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add_punches`` did: rows inserted, duplicates ignored, and every input's id."""

    inserted: int
    duplicates: int
    ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoredPunch:
    """A punch as the outbox keeps it, with its id, sequence number and delivery state."""

    id: str
    seq: int
    gateway_id: str
    device_id: str
    device_serial: str | None
    employee: str | None
    card: str | None
    device_time: datetime | None  # naive, as recorded by the terminal
    time_utc: datetime | None  # aware UTC; None when the recorded time was impossible
    utc_offset_minutes: int | None
    state: str
    state_code: int | None
    verify: str
    verify_code: int | None
    source: str  # "device" | "live" | "manual"
    kind: str  # "punch" | "void"
    void_of: str | None
    operator: str | None
    reason: str | None
    entered_at: datetime | None
    received_at: datetime
    delivery: str  # "pending" | "delivered"
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    suspect: list[str]
    raw: bytes | None
    replayed: bool = False  # offered for delivery before (the backend may have it)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times ISO-8601 (aware ones with their offset), raw bytes as hex."""
        out: dict[str, Any] = {}
        for name in COLUMNS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, bytes):
                value = value.hex()
            elif isinstance(value, list):
                value = list(value)
            out[name] = value
        out["replayed"] = self.replayed
        return out


_INDEX = {name: i for i, name in enumerate(COLUMNS)}
_DEVICE_TIME, _TIME_UTC = _INDEX["device_time"], _INDEX["time_utc"]
_ENTERED, _DELIVERED_AT = _INDEX["entered_at"], _INDEX["delivered_at"]
_RECEIVED, _SUSPECT, _DELIVERY = _INDEX["received_at"], _INDEX["suspect"], _INDEX["delivery"]
_FIELDS = (*COLUMNS, "replayed")
_fromiso = datetime.fromisoformat


def decode(row: tuple[Any, ...]) -> StoredPunch:
    """A ``StoredPunch`` from a row selected with ``SELECT``."""
    return decode_rows([row])[0]


def decode_rows(rows: Iterable[tuple[Any, ...]]) -> list[StoredPunch]:
    """``StoredPunch``es from rows selected with ``SELECT``, in order.

    Built by filling each instance dict directly: the generated ``__init__`` of a frozen
    dataclass sets 27 fields through ``object.__setattr__`` and was most of the cost of taking
    a batch of 500. The instances are as frozen as any other. Rows stored by one batch share
    their receive time, so its text is parsed once.
    """
    out: list[StoredPunch] = []
    received: dict[str, datetime] = {}
    new = object.__new__
    for row in rows:
        values = list(row)
        try:
            if (value := values[_DEVICE_TIME]) is not None:
                values[_DEVICE_TIME] = _fromiso(value)
            if (value := values[_TIME_UTC]) is not None:
                values[_TIME_UTC] = _fromiso(value)
            if (value := values[_ENTERED]) is not None:
                values[_ENTERED] = _fromiso(value)
            if (value := values[_DELIVERED_AT]) is not None:
                values[_DELIVERED_AT] = _fromiso(value)
            text = values[_RECEIVED]
            at = received.get(text)
            if at is None:
                at = received[text] = _fromiso(text)
            values[_RECEIVED] = at
            values[_SUSPECT] = values[_SUSPECT].split(",") if values[_SUSPECT] else []
        except (TypeError, ValueError, AttributeError) as exc:
            # Only a damaged or hand-edited file holds such a row (salvage keeps none).
            raise OutboxError(
                f"punch seq {row[1]} (id {row[0]}) has a damaged stored value: {exc}. Run "
                "'punchgate outbox check'; the row itself is kept as it is"
            ) from exc
        values[_DELIVERY] = "pending" if values[_DELIVERED_AT] is None else "delivered"
        values[-1] = bool(values[-1])
        punch = new(StoredPunch)
        punch.__dict__.update(zip(_FIELDS, values, strict=True))
        out.append(punch)
    return out


def encode_new(
    punch_id: str,
    gateway_id: str,
    punch: Punch,
    received_at: str,
    *,
    source: str | None = None,
    kind: str = "punch",
    void_of: str | None = None,
    operator: str | None = None,
    reason: str | None = None,
    entered_at: str | None = None,
) -> tuple[Any, ...]:
    """Values for ``INSERT`` after the seq (which is only known inside the transaction)."""
    return (
        punch_id,
        gateway_id,
        punch.device_id,
        punch.device_serial,
        punch.employee,
        punch.card,
        punch.device_time.isoformat(),
        None if punch.time_utc is None else iso_utc(punch.time_utc),
        punch.utc_offset_minutes,
        punch.state.value,
        punch.state_code,
        punch.verify.value,
        punch.verify_code,
        source or punch.source.value,
        kind,
        void_of,
        operator,
        reason,
        entered_at,
        received_at,
        ",".join(sorted(s.value for s in punch.suspect)) or None,
        punch.raw,
    )


def approx_json_size(row: StoredPunch) -> int:
    """A cheap upper-bound estimate of the row's JSON size, for byte-bounded batches."""
    size = 600  # keys, punctuation and fixed-width times
    for text in (row.id, row.device_id, row.device_serial, row.employee, row.card, row.reason):
        if text:
            size += len(text)
    if row.operator:
        size += len(row.operator)
    if row.last_error:
        size += len(row.last_error)
    if row.raw:
        size += 2 * len(row.raw)
    return size
