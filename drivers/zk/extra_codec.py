"""Fast paths over the codec in ``protocol``/``records``: bulk checksums, bulk records, encodings.

``protocol.checksum`` and ``records.unpack_attendance`` are the reference; these functions are
bit-exact with them (tested with hypothesis) but avoid a Python loop per 16-bit word and an object
per record, which is what makes a 100,000-record pull take a fraction of a second.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import replace

from config.errors import ProtocolError
from drivers.zk.protocol import HEADER_SIZE, Packet
from drivers.zk.records import RECORD_SIZES, UserRecord, pack_user, unpack_user

_MOD = 0xFFFF  # 2**16 ≡ 1 (mod 0xFFFF), so a little-endian integer ≡ the sum of its u16 words
_HEADER = struct.Struct("<4H")


def fast_checksum(packet: bytes | bytearray | memoryview) -> int:
    """Same value as ``protocol.checksum`` in O(n) C time (one big-int reduction)."""
    even = len(packet) - (len(packet) % 2)
    value = int.from_bytes(packet[:even], "little")
    last = packet[-1] if len(packet) % 2 else 0
    return _finish(value, last)


def _finish(value: int, extra: int) -> int:
    # The reference folds at 0xFFFF after every add: the total is 0 only when every word is 0,
    # otherwise it is the sum reduced into 1..0xFFFF.
    if value == 0 and extra == 0:
        total = 0
    else:
        total = ((value % _MOD) + extra - 1) % _MOD + 1
    return (_MOD - 1 - total) % _MOD


def packet_checksum(command: int, session: int, reply: int, data: bytes | memoryview) -> int:
    """Checksum of a packet with these header fields and data (header is even, so words align)."""
    even = len(data) - (len(data) % 2)
    value = int.from_bytes(data[:even], "little") + command + session + reply
    last = data[-1] if len(data) % 2 else 0
    return _finish(value, last)


def parse_packet(raw: bytes) -> Packet:
    """Parse a received packet (header fields + data) without verifying it."""
    if len(raw) < HEADER_SIZE:
        raise ProtocolError(f"ZK packet of {len(raw)} bytes is shorter than its 8-byte header")
    command, value, session, reply = _HEADER.unpack_from(raw)
    return Packet(command, session, reply, raw[HEADER_SIZE:], value)


def packet_ok(packet: Packet) -> bool:
    """True when the received checksum is right (pyzk's off-by-one reply number is accepted)."""
    if packet.checksum is None:
        return True
    expected = packet_checksum(packet.command, packet.session, packet.reply, packet.data)
    if packet.checksum == expected:
        return True
    previous = (packet.reply - 1) % _MOD
    return packet.checksum == packet_checksum(packet.command, packet.session, previous, packet.data)


def build_packet(command: int, session: int, reply: int, data: bytes = b"") -> bytes:
    """Bytes of a request with a correct checksum (what ``Packet.pack`` gives, faster)."""
    value = packet_checksum(command, session, reply, data)
    return _HEADER.pack(command, value, session, reply) + data


# Attendance records in bulk. Each yields (user key, verify, raw time, state), the field order of
# the common 40-byte layout (16-byte records are reordered, a small cost on that firmware). The
# user key is bytes for 40-byte records (the NUL-padded user id) and an int otherwise (numeric
# user id for 16-byte, uid for 8-byte), so callers can cache its decoding.

_REC40 = struct.Struct("<2x24sBIB8x")
_REC16 = struct.Struct("<IIBB6x")
_REC8 = struct.Struct("<HBIB")

RecordFields = tuple[bytes | int, int, int, int]


def iter_record_fields(body: bytes | memoryview, size: int) -> Iterator[RecordFields]:
    """(user key, verify, raw time, state) of every ``size``-byte record in ``body``."""
    if size not in RECORD_SIZES:
        raise ProtocolError(f"unknown attendance record size {size} (known: 40, 16, 8)")
    if len(body) % size:
        raise ProtocolError(f"{len(body)} bytes of records is not a multiple of {size}")
    if size == 40:
        return _REC40.iter_unpack(body)
    if size == 16:
        rows = _REC16.iter_unpack(body)
        return ((user, verify, value, state) for user, value, verify, state in rows)
    return _REC8.iter_unpack(body)


def user_key_text(key: bytes | int) -> str:
    """The user id string of a record's user key (as ``records.unpack_attendance`` gives it)."""
    if isinstance(key, int):
        return str(key)
    return key.split(b"\x00", 1)[0].decode("utf-8", errors="replace")


# Users with a configurable name encoding. The layouts stay those of ``records``; only the name
# field is re-encoded, at its fixed offset, so the codec keeps one definition of each layout.

_NAME_FIELD = {72: (11, 24), 28: (8, 8)}  # user size -> (offset, length) of the name


def pack_user_encoded(user: UserRecord, size: int, encoding: str) -> bytes:
    """``records.pack_user`` with the name in ``encoding`` (cut at a character boundary)."""
    raw = bytearray(pack_user(replace(user, name=""), size))
    offset, length = _NAME_FIELD[size]
    name = _encode_fitting(user.name, encoding, length)
    raw[offset : offset + length] = name.ljust(length, b"\0")
    return bytes(raw)


def unpack_user_encoded(raw: bytes, encoding: str) -> UserRecord:
    """``records.unpack_user`` with the name decoded from ``encoding``."""
    user = unpack_user(raw)
    offset, length = _NAME_FIELD[len(raw)]
    name = raw[offset : offset + length].split(b"\0", 1)[0].decode(encoding, errors="replace")
    return replace(user, name=name.strip())


def _encode_fitting(text: str, encoding: str, limit: int) -> bytes:
    """Encode, dropping trailing characters until it fits (never a torn multi-byte character)."""
    encoded = text.encode(encoding, errors="replace")
    while len(encoded) > limit:
        text = text[:-1]
        encoded = text.encode(encoding, errors="replace")
    return encoded
