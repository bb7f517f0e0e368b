"""Attendance record, user and live-event layouts of ZK terminals (all firmware variants).

Pure pack/unpack, no I/O. An impossible date never aborts a parse: the value carries
``timestamp=None`` and its raw bytes, so the caller can keep and flag it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from config.errors import ProtocolError
from drivers.zk.protocol import decode_time, decode_time6, encode_time, encode_time6

RECORD_SIZES = (40, 16, 8)
USER_SIZES = (72, 28)
EVENT_SIZES = (32, 12, 36, 52)

_REC40 = struct.Struct("<H24sBIB8s")  # uid, user_id, verify, time, state, spare
_REC16 = struct.Struct("<IIBB2sI")  # user_id, time, verify, state, reserved, workcode
_REC8 = struct.Struct("<HBIB")  # uid, verify, time, state (pyzk's reading)
_USER72 = struct.Struct("<HB8s24sIx7sx24s")  # uid, privilege, password, name, card, group, user_id
_USER28 = struct.Struct("<HB5s8sIxBhI")  # uid, privilege, password, name, card, group, tz, user_id
_EV32 = struct.Struct("<24sBB6s")
_EV12 = struct.Struct("<IBB6s")


def _cstr(raw: bytes, encoding: str = "utf-8") -> str:
    return raw.split(b"\x00", 1)[0].decode(encoding, errors="replace")


def _numeric(user_id: str, layout: str) -> int:
    try:
        value = int(user_id)
    except ValueError:
        raise ProtocolError(f"user id {user_id!r} must be numeric in {layout}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise ProtocolError(f"user id {user_id!r} does not fit the u32 of {layout}")
    return value


def _time_or_none(value: int) -> datetime | None:
    try:
        return decode_time(value)
    except ProtocolError:
        return None


@dataclass(frozen=True, slots=True)
class AttendanceRecord:
    """One punch in the terminal log; ``timestamp`` is naive device-local, None if impossible."""

    uid: int
    user_id: str
    timestamp: datetime | None
    verify: int = 1
    state: int = 0
    workcode: int = 0
    raw: bytes = b""  # the record as read from the wire (empty when built locally)

    @property
    def status(self) -> int:
        """pyzk's name for the verify type."""
        return self.verify

    @property
    def punch(self) -> int:
        """pyzk's name for the in/out state."""
        return self.state


def pack_attendance(record: AttendanceRecord, size: int, *, time_raw: int | None = None) -> bytes:
    """One record in the 40-, 16- or 8-byte layout; ``time_raw`` overrides the encoded time."""
    if time_raw is None:
        if record.timestamp is None:
            raise ProtocolError("a record without a timestamp needs time_raw to be packed")
        time_raw = encode_time(record.timestamp)
    if size == 40:
        uid_bytes = record.user_id.encode()[:24]
        return _REC40.pack(record.uid, uid_bytes, record.verify, time_raw, record.state, b"")
    if size == 16:
        number = _numeric(record.user_id, "16-byte records")
        return _REC16.pack(number, time_raw, record.verify, record.state, b"", record.workcode)
    if size == 8:
        return _REC8.pack(record.uid, record.verify, time_raw, record.state)
    raise ProtocolError(f"unknown attendance record size {size} (known: 40, 16, 8)")


def unpack_attendance(raw: bytes) -> AttendanceRecord:
    """Parse one record; its size (40, 16, 8) is ``len(raw)``.

    8-byte records carry only the uid: ``user_id`` is ``str(uid)`` and the caller maps it
    through the user list.
    """
    size = len(raw)
    if size == 40:
        uid, uid_bytes, verify, value, state, _spare = _REC40.unpack(raw)
        return AttendanceRecord(
            uid, _cstr(uid_bytes), _time_or_none(value), verify, state, 0, bytes(raw)
        )
    if size == 16:
        number, value, verify, state, _res, workcode = _REC16.unpack(raw)
        return AttendanceRecord(
            0, str(number), _time_or_none(value), verify, state, workcode, bytes(raw)
        )
    if size == 8:
        uid, verify, value, state = _REC8.unpack(raw)
        return AttendanceRecord(uid, str(uid), _time_or_none(value), verify, state, 0, bytes(raw))
    raise ProtocolError(f"unknown attendance record size {size} (known: 40, 16, 8)")


def iter_attendance(data: bytes, size: int) -> Iterator[AttendanceRecord]:
    """Records of ``size`` bytes in ``data`` (without the u32 total); a partial tail is an error."""
    if size not in RECORD_SIZES:
        raise ProtocolError(f"unknown attendance record size {size} (known: 40, 16, 8)")
    if len(data) % size:
        raise ProtocolError(f"{len(data)} bytes of records is not a multiple of {size}")
    view = memoryview(data)
    for offset in range(0, len(data), size):
        yield unpack_attendance(bytes(view[offset : offset + size]))


def buffer_body(buffer: bytes) -> bytes:
    """The records of a buffered read: strip and check its leading u32 total size."""
    if len(buffer) < 4:
        raise ProtocolError(f"buffer of {len(buffer)} bytes has no u32 total size")
    (total,) = struct.unpack_from("<I", buffer)
    if total > len(buffer) - 4:
        raise ProtocolError(f"buffer announces {total} bytes but holds {len(buffer) - 4}")
    return buffer[4 : 4 + total]


def record_size_for(total: int, count: int) -> int:
    """Record size of a buffer from its total and the record count of GET_FREE_SIZES."""
    if count <= 0 or total % count or total // count not in RECORD_SIZES:
        raise ProtocolError(f"{total} bytes for {count} records matches no known record size")
    return total // count


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user on the terminal: ``uid`` is the terminal's slot, ``user_id`` the badge number."""

    uid: int
    user_id: str
    name: str = ""
    privilege: int = 0
    password: str = ""
    card: int = 0
    group_id: str = ""


def pack_user(user: UserRecord, size: int, encoding: str = "utf-8") -> bytes:
    """One user in the 72- or 28-byte layout, the name in ``encoding`` (cut to fit the field)."""
    # A character the code page lacks becomes "?", as a terminal stores what it can.
    name, password = user.name.encode(encoding, errors="replace"), user.password.encode()
    if size == 72:
        return _USER72.pack(
            user.uid,
            user.privilege,
            password[:8],
            name[:24],
            user.card,
            user.group_id.encode()[:7],
            user.user_id.encode()[:24],
        )
    if size == 28:
        group = int(user.group_id) if user.group_id.isdecimal() else 0
        number = _numeric(user.user_id, "28-byte users")
        return _USER28.pack(
            user.uid, user.privilege, password[:5], name[:8], user.card, group, 0, number
        )
    raise ProtocolError(f"unknown user record size {size} (known: 72, 28)")


def unpack_user(raw: bytes, encoding: str = "utf-8") -> UserRecord:
    """Parse one user; its size (72, 28) is ``len(raw)``, the name is decoded from ``encoding``."""
    if len(raw) == 72:
        uid, priv, password, name, card, group, user_id = _USER72.unpack(raw)
        return UserRecord(
            uid, _cstr(user_id), _cstr(name, encoding), priv, _cstr(password), card, _cstr(group)
        )
    if len(raw) == 28:
        uid, priv, password, name, card, group, _tz, number = _USER28.unpack(raw)
        return UserRecord(
            uid, str(number), _cstr(name, encoding), priv, _cstr(password), card, str(group)
        )
    raise ProtocolError(f"unknown user record size {len(raw)} (known: 72, 28)")


def iter_users(data: bytes, size: int) -> Iterator[UserRecord]:
    """Users of ``size`` bytes in ``data`` (without the u32 total)."""
    if size not in USER_SIZES or len(data) % size:
        raise ProtocolError(f"{len(data)} bytes of users do not split into {size}-byte records")
    for offset in range(0, len(data), size):
        yield unpack_user(data[offset : offset + size])


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """An attendance event pushed by the terminal (REG_EVENT, event code 1)."""

    user_id: str
    timestamp: datetime | None  # None when the 6-byte time is impossible
    verify: int = 1
    state: int = 0
    raw: bytes = b""


def pack_event(event: LiveEvent, size: int = 32) -> bytes:
    """One event in the 32-, 12-, 36- or 52-byte layout (extra bytes are zero)."""
    if event.timestamp is None:
        raise ProtocolError("a live event needs a timestamp to be packed")
    when = encode_time6(event.timestamp)
    if size == 12:
        number = _numeric(event.user_id, "12-byte events")
        return _EV12.pack(number, event.verify, event.state, when)
    if size in (32, 36, 52):
        body = _EV32.pack(event.user_id.encode()[:24], event.verify, event.state, when)
        return body + b"\x00" * (size - 32)
    raise ProtocolError(f"unknown live event size {size} (known: 32, 12, 36, 52)")


def _event_size(length: int) -> int:
    for size in EVENT_SIZES:  # one event of an exact known size first
        if length == size:
            return size
    for size in (32, 52, 36, 12):  # then several events of one size
        if length % size == 0:
            return size
    raise ProtocolError(f"live event data of {length} bytes matches no known event size")


def unpack_events(data: bytes) -> list[LiveEvent]:
    """Every event in the data of one REG_EVENT packet (tolerates 32/12/36/52-byte forms)."""
    if not data:
        return []
    size = _event_size(len(data))
    events = []
    for offset in range(0, len(data), size):
        raw = data[offset : offset + size]
        if size == 12:
            number, verify, state, when = _EV12.unpack(raw)
            user_id = str(number)
        else:
            uid_bytes, verify, state, when = _EV32.unpack_from(raw)
            user_id = _cstr(uid_bytes)
        try:
            timestamp: datetime | None = decode_time6(when)
        except ProtocolError:
            timestamp = None
        events.append(LiveEvent(user_id, timestamp, verify, state, bytes(raw)))
    return events
