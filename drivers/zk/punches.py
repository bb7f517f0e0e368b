"""Attendance records and live events to ``Punch`` values, with device-local time made honest.

Times go through ``drivers.timeutil.localize`` (DST flags), cached per device-local hour so a
100,000-record log costs one conversion per distinct hour rather than one per record. An
impossible date (31 February) never aborts a read: the punch keeps its raw bytes, is flagged
``time_invalid``, has ``time_utc = None`` and ``device_time = INVALID_DEVICE_TIME``.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod
from drivers.timeutil import localize
from drivers.zk.extra_codec import iter_record_fields, user_key_text
from drivers.zk.records import LiveEvent

INVALID_DEVICE_TIME = datetime(1970, 1, 1)
"""``device_time`` of a punch whose recorded date is impossible; its raw bytes identify it."""

_SECONDS = tuple(timedelta(seconds=s) for s in range(3600))
_STATES = tuple(PunchState.from_zk(code) for code in range(256))
_VERIFY = tuple(VerifyMethod.from_zk(code) for code in range(256))
_NO_FLAGS: frozenset[Suspect] = frozenset()
_INVALID = frozenset({Suspect.TIME_INVALID})
_UNKNOWN_STATE = frozenset({Suspect.UNKNOWN_STATE})

# A full log read builds 100,000 punches; the dataclass __init__ of a frozen class costs about
# twice as much as setting its slots directly (it goes through object.__setattr__ per field), and
# that difference is most of a full pull's CPU time. Same fields, same order, same values: the
# tests compare both ways field for field, and this fails loudly if Punch changes shape.
_FIELDS = (
    "device_id", "device_serial", "employee", "device_time", "time_utc", "utc_offset_minutes",
    "state", "state_code", "verify", "verify_code", "source", "card", "suspect", "raw",
)  # fmt: skip
if tuple(Punch.__dataclass_fields__) != _FIELDS or hasattr(Punch, "__post_init__"):
    raise ImportError("drivers.base.Punch changed shape: update drivers/zk/punches.py _FIELDS")
_SETTERS = tuple(Punch.__dict__[name].__set__ for name in _FIELDS)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building a batch of acyclic objects.

    Each generation-2 pass rescans every punch built so far, so a 100,000-punch read would pay
    for many full collections of objects that cannot form cycles. Nests: only the outermost
    pause re-enables the collector.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Per device-local hour: (naive start, UTC start, offset minutes), or None when every second of
# the hour needs its own conversion (a DST change inside it), or False for an impossible date.
_HourEntry = tuple[datetime, datetime, int] | None | bool


class PunchBuilder:
    """Builds punches of one terminal (device id, serial, timezone); caches per hour."""

    def __init__(self, device_id: str, serial: str, tz: ZoneInfo) -> None:
        self.device_id = device_id
        self.serial = serial
        self.tz = tz
        self._hours: dict[int, _HourEntry] = {}
        self._users: dict[int, dict[bytes | int, str]] = {}

    def from_log(
        self,
        body: bytes | memoryview,
        record_size: int,
        *,
        uid_map: dict[int, str] | None = None,
        flags: frozenset[Suspect] = _NO_FLAGS,
    ) -> list[Punch]:
        """Punches of every ``record_size``-byte record in ``body`` (log order kept).

        ``uid_map`` maps terminal slots to user ids for 8-byte records, which carry only the
        slot; a slot nobody is enrolled in any more (a deleted user) gives ``uid:<slot>``, never
        the slot number itself, which may be another person's user id. ``flags`` are added to
        every punch (e.g. ``clock_drift``).
        """
        unmapped = None
        if uid_map is not None:
            users: dict[bytes | int, str] = dict(uid_map.items())
            unmapped = "uid:"
        else:  # decoded user ids, kept across the chunks of a read (keys differ per layout)
            users = self._users.setdefault(record_size, {})
        hours = self._hours
        hour_entry = self._hour
        device_id, serial = self.device_id, self.serial
        states, verifies, seconds = _STATES, _VERIFY, _SECONDS
        unknown = PunchState.UNKNOWN
        device = Source.DEVICE
        new, cls = object.__new__, Punch
        s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13 = _SETTERS
        punches: list[Punch] = []
        append = punches.append
        view = memoryview(body)
        offset = -record_size
        with no_gc():
            for key, verify, value, state in iter_record_fields(body, record_size):
                offset += record_size
                employee = users.get(key)
                if employee is None:
                    text = user_key_text(key)
                    employee = users[key] = text if unmapped is None else unmapped + text
                hour, second = divmod(value, 3600)
                entry = hours.get(hour)
                if entry is None and hour not in hours:
                    entry = hour_entry(hour)
                state_enum = states[state]
                if not entry or state_enum is unknown:
                    raw = bytes(view[offset : offset + record_size])
                    append(self._slow(entry, value, employee, state, verify, raw, flags, device))
                    continue
                naive_start, utc_start, offset_min = entry  # type: ignore[misc]
                step = seconds[second]
                # Punch(...) field by field, see _SETTERS.
                punch = new(cls)
                s0(punch, device_id)
                s1(punch, serial)
                s2(punch, employee)
                s3(punch, naive_start + step)
                s4(punch, utc_start + step)
                s5(punch, offset_min)
                s6(punch, state_enum)
                s7(punch, state)
                s8(punch, verifies[verify])
                s9(punch, verify)
                s10(punch, device)
                s11(punch, None)
                s12(punch, flags)
                s13(punch, bytes(view[offset : offset + record_size]) if flags else None)
                append(punch)
        return punches

    def from_events(
        self, events: Iterable[LiveEvent], *, flags: frozenset[Suspect] = _NO_FLAGS
    ) -> list[Punch]:
        """Punches of live events (source ``live``)."""
        out = []
        for event in events:
            if event.timestamp is None:
                out.append(
                    self._invalid(
                        event.user_id, event.state, event.verify, event.raw, flags, Source.LIVE
                    )
                )
                continue
            utc, offset, time_flags = localize(event.timestamp, self.tz)
            out.append(
                self._punch(
                    event.user_id,
                    event.timestamp,
                    utc,
                    offset,
                    event.state,
                    event.verify,
                    Source.LIVE,
                    flags | time_flags,
                    event.raw,
                )
            )
        return out

    # Internals.

    def _hour(self, hour: int) -> _HourEntry:
        days, h = divmod(hour, 24)
        rest, day = divmod(days, 31)
        year, month = divmod(rest, 12)
        try:
            start = datetime(2000 + year, month + 1, day + 1, h)
        except ValueError:
            entry: _HourEntry = False
        else:
            utc, offset, time_flags = localize(start, self.tz)
            _, end_offset, end_flags = localize(start + _SECONDS[-1], self.tz)
            same = offset == end_offset and not time_flags and not end_flags
            entry = (start, utc, offset) if same else None
        self._hours[hour] = entry
        return entry

    def _slow(
        self,
        entry: _HourEntry,
        value: int,
        employee: str,
        state: int,
        verify: int,
        raw: bytes,
        flags: frozenset[Suspect],
        source: Source,
    ) -> Punch:
        if entry is False:
            return self._invalid(employee, state, verify, raw, flags, source)
        # An hour with a DST change (or an unknown state): convert this second on its own.
        hour, rest = divmod(value, 3600)
        days, h = divmod(hour, 24)
        rest_days, day = divmod(days, 31)
        year, month = divmod(rest_days, 12)
        naive = datetime(2000 + year, month + 1, day + 1, h) + _SECONDS[rest]
        utc, offset, time_flags = localize(naive, self.tz)
        return self._punch(
            employee, naive, utc, offset, state, verify, source, flags | time_flags, raw
        )

    def _invalid(
        self,
        employee: str,
        state: int,
        verify: int,
        raw: bytes,
        flags: frozenset[Suspect],
        source: Source,
    ) -> Punch:
        return self._punch(
            employee, INVALID_DEVICE_TIME, None, None, state, verify, source, flags | _INVALID, raw
        )

    def _punch(
        self,
        employee: str,
        naive: datetime,
        utc: datetime | None,
        offset: int | None,
        state: int,
        verify: int,
        source: Source,
        flags: frozenset[Suspect],
        raw: bytes,
    ) -> Punch:
        state_enum = _STATES[state & 0xFF]
        if state_enum is PunchState.UNKNOWN:
            flags = flags | _UNKNOWN_STATE
        return Punch(
            self.device_id,
            self.serial,
            employee,
            naive,
            utc,
            offset,
            state_enum,
            state,
            _VERIFY[verify & 0xFF],
            verify,
            source,
            None,
            flags,
            raw if flags else None,
        )
