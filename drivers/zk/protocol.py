"""Byte-level codec of the ZK terminal protocol, shared by the driver and the simulator.

Pure functions and values, no I/O. Facts come from /work/shared/ZK_PROTOCOL.md and pyzk 0.9;
record, user and event layouts live in ``drivers.zk.records``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

from config.errors import ProtocolError

# Commands (client -> terminal).
CMD_USER_WRQ = 8
CMD_USERTEMP_RRQ = 9  # "what" of a buffered user read (with FCT_USER)
CMD_OPTIONS_RRQ = 11
CMD_OPTIONS_WRQ = 12
CMD_ATTLOG_RRQ = 13  # "what" of a buffered attendance read
CMD_CLEAR_DATA = 14
CMD_CLEAR_ATTLOG = 15
CMD_DELETE_USER = 18
CMD_GET_FREE_SIZES = 50
CMD_STARTVERIFY = 60
CMD_CANCELCAPTURE = 62
CMD_GET_TIME = 201
CMD_SET_TIME = 202
CMD_REG_EVENT = 500  # also the command of unsolicited live events
CMD_CONNECT = 1000
CMD_EXIT = 1001
CMD_ENABLEDEVICE = 1002
CMD_DISABLEDEVICE = 1003
CMD_REFRESHDATA = 1013
CMD_TESTVOICE = 1017
CMD_GET_VERSION = 1100
CMD_AUTH = 1102
CMD_PREPARE_DATA = 1500
CMD_DATA = 1501
CMD_FREE_DATA = 1502
CMD_PREPARE_BUFFER = 1503
CMD_READ_BUFFER = 1504

# Replies (terminal -> client).
ACK_OK = 2000
ACK_ERROR = 2001
ACK_DATA = 2002
ACK_UNAUTH = 2005
ACK_UNKNOWN = 0xFFFF

FCT_USER = 5
EF_ATTLOG = 1  # REG_EVENT flag, and the event code in the session field of an attendance event

USHRT_MAX = 0xFFFF
HEADER_SIZE = 8
TCP_MAGIC = b"\x50\x50\x82\x7d"
TCP_TOP_SIZE = 8
DATA_FRAME_SIZE = 1008  # payload of one DATA frame in a buffered read (hardware capture)
MAX_CHUNK_TCP = 0xFFC0  # what pyzk asks per 1504 over TCP
MAX_CHUNK_UDP = 16 * 1024  # ... and over UDP
DEFAULT_MAX_PACKET = 16 * 1024 * 1024  # bound of one TCP packet; a whole-log DATA reply fits


def checksum(packet: bytes) -> int:
    """ZK checksum of a header (checksum field zeroed) + data, bit-exact with pyzk/zkemsdk.

    zkemsdk adds LE u16 words (an odd last byte as its own value) folding at 0xFFFF, i.e. a
    ones'-complement sum that is 0 only when every byte is 0; the sum is then inverted and,
    like the C original, 0 and 0xFFFF (the two ones'-complement zeros) both map to 0xFFFE.
    Summing all words at once and reducing modulo 0xFFFF gives the same result at C speed.
    """
    n = len(packet) // 2
    total = sum(struct.unpack_from(f"<{n}H", packet)) if n else 0
    if len(packet) % 2:
        total += packet[-1]
    folded = (total - 1) % USHRT_MAX + 1 if total else 0
    return (USHRT_MAX - 1 - folded) % USHRT_MAX


def next_reply(reply: int) -> int:
    """The reply number after ``reply``, wrapping as pyzk does (65534 -> 0)."""
    return (reply + 1) % USHRT_MAX


@dataclass(frozen=True, slots=True)
class Packet:
    """One ZK packet: ``u16 command | u16 checksum | u16 session | u16 reply`` + data."""

    command: int
    session: int = 0
    reply: int = 0
    data: bytes = b""
    checksum: int | None = None  # as received; None means "compute when packing"

    def pack(self) -> bytes:
        """Bytes on the wire (UDP datagram, or what follows the TCP top)."""
        value = self.checksum if self.checksum is not None else self.expected_checksum()
        return struct.pack("<4H", self.command, value, self.session, self.reply) + self.data

    def expected_checksum(self) -> int:
        """The correct checksum for this command, session, reply and data."""
        return _checksum_for(self.command, self.session, self.reply, self.data)

    def checksum_ok(self) -> bool:
        """True when the received checksum is correct."""
        return self.checksum is None or self.checksum == self.expected_checksum()

    def checksum_ok_pyzk(self) -> bool:
        """Correct, or pyzk 0.9's off-by-one (it checksums the previous reply number)."""
        if self.checksum_ok():
            return True
        previous = (self.reply - 1) % USHRT_MAX
        return self.checksum == _checksum_for(self.command, self.session, previous, self.data)

    @classmethod
    def unpack(cls, raw: bytes) -> Packet:
        """Parse a packet; raise ``ProtocolError`` when it is shorter than a header."""
        if len(raw) < HEADER_SIZE:
            raise ProtocolError(f"ZK packet of {len(raw)} bytes is shorter than its 8-byte header")
        command, value, session, reply = struct.unpack_from("<4H", raw)
        return cls(command, session, reply, bytes(raw[HEADER_SIZE:]), value)


def _checksum_for(command: int, session: int, reply: int, data: bytes) -> int:
    return checksum(struct.pack("<4H", command, 0, session, reply) + data)


def tcp_frame(packet: bytes) -> bytes:
    """Prefix a packet with the TCP top ``50 50 82 7D`` + u32 LE length."""
    return TCP_MAGIC + struct.pack("<I", len(packet)) + packet


class TcpDeframer:
    """Incremental TCP deframer: feed arbitrary chunks, get complete packets back.

    The buffer never holds more than one top plus ``max_packet`` bytes. A bad magic or a length
    outside ``[8, max_packet]`` raises ``ProtocolError``: the stream cannot be resynchronised
    safely, so the caller should drop the connection.
    """

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self.max_packet = max_packet
        self._buffer = bytearray()
        self._frame_size = 0  # top + packet of the frame in progress; 0 until its top is read

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete packet."""
        return len(self._buffer)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return every packet (without the top) now complete."""
        packets: list[bytes] = []
        view = memoryview(chunk)
        while view:
            target = self._frame_size or TCP_TOP_SIZE
            take = target - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
            if not self._frame_size:
                self._check_top()
            if self._frame_size and len(self._buffer) == self._frame_size:
                packets.append(bytes(self._buffer[TCP_TOP_SIZE:]))
                self._buffer.clear()
                self._frame_size = 0
        return packets

    def _check_top(self) -> None:
        head = bytes(self._buffer[:4])
        if head != TCP_MAGIC[: len(head)]:
            self._buffer.clear()
            raise ProtocolError(_foreign_top(head))
        if len(self._buffer) < TCP_TOP_SIZE:
            return
        (length,) = struct.unpack_from("<I", self._buffer, 4)
        if not HEADER_SIZE <= length <= self.max_packet:
            self._buffer.clear()
            raise ProtocolError(
                f"TCP top announces {length} bytes (allowed {HEADER_SIZE}..{self.max_packet})"
            )
        self._frame_size = TCP_TOP_SIZE + length


# What answers on a port that is not a ZK terminal's, by the first bytes it sends.
_FOREIGN = (
    (b"HTTP", "the port answered like a web server (HTTP)"),
    (b"SSH-", "the port answered like an SSH server"),
    (b"\x16\x03", "the port answered with TLS (an HTTPS or other TLS server)"),
)


def _foreign_top(head: bytes) -> str:
    """Why these first bytes are not a ZK TCP top, naming the service they look like."""
    for prefix, said in _FOREIGN:
        if head.startswith(prefix[: len(head)]) and len(head) >= min(len(prefix), 2):
            return f"{said}, not like a ZK terminal: wrong port (ZK terminals use 4370)"
    return f"bad TCP top {head.hex()} (expected 5050827d + length)"


# Time forms.


def encode_time(when: datetime) -> int:
    """The 4-byte time of records and GET/SET_TIME (every month counts 31 days)."""
    return encode_time_fields(when.year, when.month, when.day, when.hour, when.minute, when.second)


def encode_time_fields(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """Encode without validation, so impossible dates (31 February) can be produced on purpose."""
    days = (year % 100) * 12 * 31 + (month - 1) * 31 + day - 1
    return days * 86400 + (hour * 60 + minute) * 60 + second


def time_fields(value: int) -> tuple[int, int, int, int, int, int]:
    """Split a 4-byte time into (year, month, day, hour, minute, second), unvalidated."""
    value, second = divmod(value, 60)
    value, minute = divmod(value, 60)
    value, hour = divmod(value, 24)
    value, day = divmod(value, 31)
    year, month = divmod(value, 12)
    return 2000 + year, month + 1, day + 1, hour, minute, second


def decode_time(value: int) -> datetime:
    """Decode a 4-byte time; raise ``ProtocolError`` for an impossible date (30 February)."""
    fields = time_fields(value)
    try:
        return datetime(*fields)
    except ValueError as exc:
        raise ProtocolError(f"impossible date {fields} in 4-byte time {value:#010x}") from exc


def encode_time6(when: datetime) -> bytes:
    """The 6-byte time of live events: ``Y-2000, M, D, h, m, s``."""
    return bytes([when.year - 2000, when.month, when.day, when.hour, when.minute, when.second])


def decode_time6(raw: bytes) -> datetime:
    """Decode a 6-byte time; raise ``ProtocolError`` when it is not a real date."""
    if len(raw) != 6:
        raise ProtocolError(f"6-byte time expected, got {len(raw)} bytes")
    try:
        return datetime(2000 + raw[0], raw[1], raw[2], raw[3], raw[4], raw[5])
    except ValueError as exc:
        raise ProtocolError(f"impossible date in 6-byte time {raw.hex()}") from exc


# Authentication.


def make_commkey(key: int, session: int, ticks: int = 50) -> bytes:
    """The 4-byte AUTH payload for a comm key and session (ZK's MakeKey, as pyzk sends it)."""
    reversed_bits = int(f"{key & 0xFFFFFFFF:032b}"[::-1], 2)
    k = (reversed_bits + session) & 0xFFFFFFFF
    b = bytes(x ^ y for x, y in zip(struct.pack("<I", k), b"ZKSO", strict=True))
    swapped = b[2:4] + b[0:2]
    t = ticks & 0xFF
    return bytes([swapped[0] ^ t, swapped[1] ^ t, t, swapped[3] ^ t])


# Buffered reads.


def prepare_buffer_request(what: int, fct: int = 0, ext: int = 0) -> bytes:
    """Data of a 1503 request: ``<bhii`` = 1, what, fct, ext."""
    return struct.pack("<bhii", 1, what, fct, ext)


def parse_prepare_buffer_request(data: bytes) -> tuple[int, int, int]:
    """(what, fct, ext) of a 1503 request."""
    if len(data) < 11:
        raise ProtocolError(f"1503 request needs 11 bytes, got {len(data)}")
    _one, what, fct, ext = struct.unpack_from("<bhii", data)
    return what, fct, ext


def prepare_buffer_reply(size: int) -> bytes:
    """ACK_OK data answering 1503: ``00 | u32 size | u32 size | 4 bytes`` (sent as zeros)."""
    return b"\x00" + struct.pack("<II", size, size) + b"\x00" * 4


def parse_prepare_buffer_reply(data: bytes) -> int:
    """Buffer size from the ACK_OK answering 1503."""
    if len(data) < 5:
        raise ProtocolError(f"1503 ACK_OK carries {len(data)} bytes, need at least 5 (00 + size)")
    return int(struct.unpack_from("<I", data, 1)[0])


def read_buffer_request(start: int, size: int) -> bytes:
    """Data of a 1504 request: ``<ii`` start offset, size."""
    return struct.pack("<ii", start, size)


def parse_read_buffer_request(data: bytes) -> tuple[int, int]:
    """(start, size) of a 1504 request."""
    if len(data) < 8:
        raise ProtocolError(f"1504 request needs 8 bytes, got {len(data)}")
    start, size = struct.unpack_from("<ii", data)
    return start, size


def prepare_data(size: int, frame: int = DATA_FRAME_SIZE) -> bytes:
    """PREPARE_DATA payload announcing a chunk: ``u32 size | u32 frame size`` (8 bytes)."""
    return struct.pack("<II", size, frame)


def parse_prepare_data(data: bytes) -> tuple[int, int]:
    """(size, frame size) of a PREPARE_DATA payload."""
    if len(data) < 8:
        raise ProtocolError(f"PREPARE_DATA carries {len(data)} bytes, expected 8")
    size, frame = struct.unpack_from("<II", data)
    return size, frame


@dataclass(frozen=True, slots=True)
class FreeSizes:
    """GET_FREE_SIZES: 20 x i32, then 3 x i32 of face counts on face terminals."""

    users: int = 0
    fingers: int = 0
    records: int = 0
    oplog: int = 0
    cards: int = 0
    finger_capacity: int = 0
    user_capacity: int = 0
    record_capacity: int = 0
    fingers_free: int = 0
    users_free: int = 0
    records_free: int = 0
    faces: int | None = None
    face_capacity: int | None = None

    def pack(self) -> bytes:
        """80 bytes, or 92 with face counts."""
        fields = [0] * 20
        fields[4], fields[6], fields[8], fields[10], fields[12] = (
            self.users,
            self.fingers,
            self.records,
            self.oplog,
            self.cards,
        )
        fields[14], fields[15], fields[16] = (
            self.finger_capacity,
            self.user_capacity,
            self.record_capacity,
        )
        fields[17], fields[18], fields[19] = self.fingers_free, self.users_free, self.records_free
        raw = struct.pack("<20i", *fields)
        if self.faces is not None:
            raw += struct.pack("<3i", self.faces, 0, self.face_capacity or 0)
        return raw

    @classmethod
    def unpack(cls, data: bytes) -> FreeSizes:
        """Parse 80+ bytes; raise ``ProtocolError`` when shorter."""
        if len(data) < 80:
            raise ProtocolError(f"GET_FREE_SIZES answered {len(data)} bytes, expected at least 80")
        f = struct.unpack_from("<20i", data)
        faces = face_cap = None
        if len(data) >= 92:
            faces, _, face_cap = struct.unpack_from("<3i", data, 80)
        return cls(
            users=f[4],
            fingers=f[6],
            records=f[8],
            oplog=f[10],
            cards=f[12],
            finger_capacity=f[14],
            user_capacity=f[15],
            record_capacity=f[16],
            fingers_free=f[17],
            users_free=f[18],
            records_free=f[19],
            faces=faces,
            face_capacity=face_cap,
        )
