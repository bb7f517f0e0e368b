"""Encoding a batch of device punches for the outbox: ids, ISO texts and row values.

The hot path of storing punches (the SQL is in buffer/ingest_store.py). A terminal's batch of
ordinary punches is encoded by the compiled encoder (buffer/_encode.c) when it was built, and
otherwise by ``Encoded._encode`` below, which computes exactly the same values.

Why the rows are built the way they are: on the target hardware an insert's cost is dominated
by binding parameters, and binding ``None`` is the most expensive kind (the driver tries and
fails to adapt it: ~5x the cost of an int). So a row binds only what varies and has a value:

- values the whole batch shares (gateway, receive time, and device, serial and source when the
  batch comes from one terminal, as it almost always does) are written into the statement as
  quoted literals, so they are bound once per batch instead of once per row;
- columns NULL for every device punch (correction metadata) are left to their defaults;
- the usually-NULL ones (card, suspect flags, raw bytes, ...) are bound only when present.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from types import ModuleType
from typing import Any

from buffer.identity import _SEP, _VARIANT, _sha256, id_from_fields, id_head
from buffer.records import iso_utc
from buffer.timetext import DAY_HOURS, HOUR_MS, MIN_SEC
from buffer.timetext import utc_text as format_utc
from drivers.base import Punch

_compiled: ModuleType | None
try:  # built from buffer/_encode.c when the machine could compile it (setup.py)
    from buffer import _encode as _compiled
except ImportError:  # no compiler at install: the Python path below does the same, slower
    _compiled = None

COMPILED = _compiled is not None  # shown by bench/outbox.py; tests check the build has it

_PER_DEVICE = ("device_id", "device_serial", "source")
_PER_ROW = ("device_time", "state", "verify")
_OPTIONAL = (
    "employee",
    "card",
    "time_utc",
    "utc_offset_minutes",
    "state_code",
    "verify_code",
    "suspect",
    "raw",
)

Mask = tuple[bool, bool, bool, bool, bool, bool, bool, bool]
Literals = tuple[tuple[str, str | int], ...]  # (column, value) written into the statement

_COMMON: Mask = (True, False, True, True, True, True, False, False)


def _literal_ok(value: str) -> bool:
    return "\x00" not in value  # the driver refuses NUL in statement text: bind those instead


class Encoded:
    """A batch turned into ids and row values (without seq), ready for one transaction."""

    __slots__ = ("ids", "literals", "masks", "one_shape", "per_device", "rows", "utc", "wall_ok")

    def __init__(
        self,
        gateway_id: str,
        punches: Sequence[Punch],
        received_at: str,
        compiled: bool = True,
    ) -> None:
        """``compiled=False`` takes the Python path even where the C encoder is built."""
        if not all(_literal_ok(v) for v in (gateway_id, received_at)):
            raise ValueError("gateway id and receive time cannot contain NUL characters")
        self.ids: list[str] = []
        self.masks: list[Mask] = []
        self.rows: list[tuple[Any, ...]] = []
        self.utc: list[str | None] = []
        self.one_shape = True  # every row has the common mask: one statement, rows as they are
        self.wall_ok = False  # every row's device_time is its UTC time plus offset, exactly
        self.literals: Literals = (("gateway_id", gateway_id), ("received_at", received_at))
        self.per_device = True
        if punches:
            first = punches[0]
            shared = (first.device_id, first.device_serial, first.source.value)
            if all(_literal_ok(v) for v in shared) and (
                (compiled and self._encode_compiled(gateway_id, punches))
                or self._encode(gateway_id, punches, True)
            ):
                # One terminal's batch (the usual case): device columns become literals.
                self.literals += tuple(zip(_PER_DEVICE, shared, strict=True))
                if self.wall_ok:  # saves the drain re-checking it per row (payload_json.py)
                    self.literals += (("wall_ok", 1),)
                self.per_device = False
                return
            self.ids, self.masks, self.rows, self.utc = [], [], [], []
            self.one_shape = True
            self._encode(gateway_id, punches, False)

    def _encode_compiled(self, gateway_id: str, punches: Sequence[Punch]) -> bool:
        """``_encode(uniform=True)`` in C when every punch is a terminal's ordinary one."""
        first = punches[0]
        serial = first.device_serial
        if _compiled is None or type(serial) is not str:
            return False
        done = _compiled.encode_batch(
            id_head(gateway_id) + serial + _SEP, punches, first.device_id, serial, first.source, UTC
        )
        if done is None:
            return False
        self.ids, self.rows, self.utc, self.wall_ok = done
        self.masks = [_COMMON] * len(self.ids)
        return True

    def _encode(self, gateway_id: str, punches: Sequence[Punch], uniform: bool) -> bool:
        """Fill ids/masks/rows/utc; in ``uniform`` mode, stop with False at a second device."""
        head = id_head(gateway_id)
        first = punches[0]
        device, serial, source = first.device_id, first.device_serial, first.source
        ids, masks, rows, utcs = (
            self.ids.append,
            self.masks.append,
            self.rows.append,
            self.utc.append,
        )
        # The ordinary punch's id and UTC text are computed inline below (what
        # id_from_fields(), identity_fields() and format_utc() do, without three calls a row);
        # tests/buffer/test_identity.py pins the ids. A str serial keeps the hashed text
        # exactly what "\x1f".join(identity_fields()) gives.
        inline = uniform and type(serial) is str
        sha, variant, hour_ms = _sha256, _VARIANT, HOUR_MS
        hours, min_sec = DAY_HOURS, MIN_SEC
        prefix = head + (serial if inline else "") + _SEP
        one_shape = True
        wall = inline  # stays True while every row's wall time is its UTC time + offset
        for index, p in enumerate(punches):
            if uniform and (
                p.device_id != device or p.device_serial != serial or p.source is not source
            ):
                return False
            utc = p.time_utc
            employee = p.employee
            code = p.state_code
            local = p.device_time
            if (
                inline
                and local.tzinfo is None
                and not p.suspect
                and p.card is None
                and p.raw is None
                and type(employee) is str
                and utc is not None
                and utc.tzinfo is UTC
                and p.utc_offset_minutes is not None
                and type(code) is int
                and p.verify_code is not None
            ):
                # A terminal's ordinary punch: the one shape worth a straight-line path.
                # Texts as isoformat() gives them, with the date part formatted once per hour
                # and no tuples made per row (fewer GC-tracked objects: fewer collections).
                micro = local.microsecond
                key = ((local.year * 13 + local.month) * 32 + local.day) * 24 + local.hour
                second = local.minute * 60 + local.second
                when = hours[key] + min_sec[second]
                if micro:
                    when = f"{when}.{micro:06d}"
                h = sha(f"{prefix}{employee}\x1f{when}\x1f{code}".encode()).hexdigest()
                # Milliseconds since the epoch, floored as (local - epoch) // 1 ms is.
                whole = hour_ms[key] + second * 1000
                ms = whole + micro // 1000
                if ms < 0:
                    ms = 0
                # "0x1" and 12 hex digits (ms < 2**48): cheaper than a format spec or zfill().
                t = hex(ms | 0x1000000000000)
                pid = f"{t[3:11]}-{t[11:]}-8{h[:3]}-{variant[h[3]]}{h[4:7]}-{h[7:19]}"
                utc_micro = utc.microsecond
                offset = p.utc_offset_minutes
                utc_key = ((utc.year * 13 + utc.month) * 32 + utc.day) * 24 + utc.hour
                utc_second = utc.minute * 60 + utc.second
                utc_text = (
                    hours[utc_key]
                    + min_sec[utc_second]
                    + (f".{utc_micro:06d}+00:00" if utc_micro else ".000000+00:00")
                )
                if wall and (
                    utc_micro != micro
                    or hour_ms[utc_key] + utc_second * 1000 + offset * 60_000 != whole
                ):
                    wall = False  # e.g. a time in a DST gap: the drain checks such rows itself
                masks(_COMMON)
                rows(
                    (
                        index,
                        pid,
                        when,
                        p.state._value_,  # the StrEnum's text, without Enum.value's cost
                        p.verify._value_,
                        employee,
                        utc_text,
                        offset,
                        code,
                        p.verify_code,
                    )
                )
            else:
                wall = False
                fields = p.identity_fields()
                pid = id_from_fields(head, p, fields)
                if utc is None:
                    utc_text = None
                elif utc.tzinfo is UTC:
                    utc_text = format_utc(utc)
                else:
                    utc_text = iso_utc(utc)
                mask, values = _general(p, pid, fields, utc_text, per_device=not uniform)
                masks(mask)
                rows((index, *values))
                one_shape = one_shape and mask == _COMMON
            ids(pid)
            utcs(utc_text)
        self.one_shape = one_shape and uniform
        self.wall_ok = wall
        return True


def _general(
    p: Punch,
    pid: str,
    fields: tuple[str, str, str, str],
    utc_text: str | None,
    per_device: bool,
) -> tuple[Mask, tuple[Any, ...]]:
    suspect = p.suspect
    optional = (
        p.employee,
        p.card,
        utc_text,
        p.utc_offset_minutes,
        p.state_code,
        p.verify_code,
        ",".join(sorted(s.value for s in suspect)) if suspect else None,
        p.raw,
    )
    mask: Mask = (
        optional[0] is not None,
        optional[1] is not None,
        optional[2] is not None,
        optional[3] is not None,
        optional[4] is not None,
        optional[5] is not None,
        optional[6] is not None,
        optional[7] is not None,
    )
    device = (p.device_id, p.device_serial, p.source.value) if per_device else ()
    row = (
        pid,
        *device,
        # identity_fields() rendered device_time, unless an invalid time used the raw bytes.
        p.device_time.isoformat() if suspect else fields[2],
        p.state.value,
        p.verify.value,
    )
    return mask, row + tuple(v for v in optional if v is not None)
