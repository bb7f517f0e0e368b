"""Command semantics of the simulated terminal, independent of TCP or UDP.

``Terminal.handle`` turns one request of an established session into the packets a real terminal
sends back, including the multi-packet buffered read of the hardware capture in ZK_PROTOCOL.md.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from config.errors import ProtocolError
from drivers.zk import protocol as p
from drivers.zk.records import UserRecord, unpack_user
from drivers.zk.simulator.faults import Faults
from drivers.zk.simulator.state import TerminalState

log = structlog.get_logger("drivers.zk.simulator")

# A buffer that fits in one DATA frame is answered to 1503 directly with one DATA packet, as
# terminals do for small buffers. pyzk 0.9 reads that form over TCP and UDP alike; over UDP it
# reads the answer with recv(1024), so a larger direct DATA would be truncated silently.
# ``Profile.direct_data_max`` overrides it (e.g. a firmware sending a whole log as one DATA).
DIRECT_DATA_MAX = p.DATA_FRAME_SIZE


@dataclass(frozen=True, slots=True)
class Profile:
    """What the terminal says about itself and which firmware layouts it uses."""

    comm_key: int = 0
    record_size: int = 40
    user_size: int = 72
    event_size: int = 32
    firmware: str = "Ver 6.60 Apr 28 2015"
    device_name: str = "PG-SIM"
    platform: str = "ZEM560_TFT"
    mac: str = "00:17:61:50:47:01"
    direct_data_max: int | None = None  # None: DIRECT_DATA_MAX
    name_encoding: str = "utf-8"  # the code page user names are kept in, as bytes


class Channel(Protocol):
    """Where a session's packets go (a TCP connection or a UDP peer)."""

    def send(self, packets: list[p.Packet], session: Session | None, buffered: bool) -> None:
        """Write packets applying the active faults; ``buffered`` counts toward a drop."""


@dataclass(eq=False)
class Session:
    """One client session, created by CONNECT."""

    id: int
    transport: str  # "tcp" or "udp"
    address: tuple[str, int]
    channel: Channel
    authenticated: bool = False
    event_flags: int = 0
    prepared: bytes | None = None  # the buffer of the current buffered read
    read_bytes: int = 0  # wire bytes sent for the current buffered read
    last_seen: float = 0.0
    dropped: bool = False


@dataclass
class Reply:
    """Packets answering one request."""

    packets: list[p.Packet] = field(default_factory=list)
    buffered: bool = False  # part of a buffered read: counts toward drop_after_bytes
    end_session: bool = False


_OK_ONLY = {
    p.CMD_REFRESHDATA,
    p.CMD_CANCELCAPTURE,
    p.CMD_STARTVERIFY,
    p.CMD_TESTVOICE,
    p.CMD_OPTIONS_WRQ,
}


Handler = Callable[[Session, p.Packet], Reply]  # how the firmware answers one command


class Terminal:
    """Answers requests from the state, the profile and the active faults."""

    def __init__(self, state: TerminalState, profile: Profile, faults: Faults) -> None:
        self.state = state
        self.profile = profile
        self.faults = faults
        self._handlers: dict[int, Handler] = {
            p.CMD_AUTH: self._auth,
            p.CMD_EXIT: self._exit,
            p.CMD_GET_VERSION: self._version,
            p.CMD_OPTIONS_RRQ: self._options,
            p.CMD_GET_FREE_SIZES: self._free_sizes,
            p.CMD_GET_TIME: self._get_time,
            p.CMD_SET_TIME: self._set_time,
            p.CMD_USER_WRQ: self._write_user,
            p.CMD_DELETE_USER: self._delete_user,
            p.CMD_CLEAR_ATTLOG: self._clear_log,
            p.CMD_CLEAR_DATA: self._clear_data,
            p.CMD_REG_EVENT: self._reg_event,
            p.CMD_PREPARE_BUFFER: self._prepare_buffer,
            p.CMD_READ_BUFFER: self._read_buffer,
            p.CMD_FREE_DATA: self._free_data,
            p.CMD_DISABLEDEVICE: self._disable,
            p.CMD_ENABLEDEVICE: self._enable,
        }

    def intercept(self, command: int, wrap: Callable[[Handler], Handler]) -> Callable[[], None]:
        """Answer ``command`` with ``wrap(current answer)``; returns what restores the answer."""
        original = self._handlers[command]
        self._handlers[command] = wrap(original)

        def restore() -> None:
            self._handlers[command] = original

        return restore

    def connect(self, session: Session, request: p.Packet) -> Reply:
        """Answer CONNECT: ACK_OK, or ACK_UNAUTH (carrying the session) when a key is set."""
        session.authenticated = self.profile.comm_key == 0
        code = p.ACK_OK if session.authenticated else p.ACK_UNAUTH
        return Reply([p.Packet(code, session.id, request.reply)])

    def handle(self, session: Session, request: p.Packet) -> Reply | None:
        """Answer one request of an established session; None when nothing is sent back."""
        if request.command == p.ACK_OK:
            return None  # the client acknowledging a live event
        if request.session != session.id or (
            not session.authenticated and request.command != p.CMD_AUTH
        ):
            return self._ack(session, request, p.ACK_UNAUTH)
        if request.command in self.faults.unknown_commands:
            return self._ack(session, request, p.ACK_UNKNOWN)
        if request.command in _OK_ONLY:
            return self._ack(session, request)
        handler = self._handlers.get(request.command)
        if handler is None:
            return self._ack(session, request, p.ACK_UNKNOWN)
        try:
            return handler(session, request)
        except ProtocolError as exc:
            log.info("request_rejected", command=request.command, reason=str(exc))
            return self._ack(session, request, p.ACK_ERROR)

    @staticmethod
    def _ack(session: Session, request: p.Packet, code: int = p.ACK_OK, data: bytes = b"") -> Reply:
        return Reply([p.Packet(code, session.id, request.reply, data)])

    def _auth(self, session: Session, request: p.Packet) -> Reply:
        ticks = request.data[2] if len(request.data) == 4 else 0
        expected = p.make_commkey(self.profile.comm_key, session.id, ticks)
        session.authenticated = request.data == expected
        if not session.authenticated:
            log.info("auth_refused", session=session.id, address=session.address[0])
        return self._ack(session, request, p.ACK_OK if session.authenticated else p.ACK_UNAUTH)

    def _exit(self, session: Session, request: p.Packet) -> Reply:
        reply = self._ack(session, request)
        reply.end_session = True
        return reply

    def _version(self, session: Session, request: p.Packet) -> Reply:
        return self._ack(session, request, data=self.profile.firmware.encode() + b"\x00")

    def _options(self, session: Session, request: p.Packet) -> Reply:
        key = request.data.split(b"\x00", 1)[0].decode("ascii", errors="replace")
        values = {
            "~SerialNumber": self.state.serial,
            "~DeviceName": self.profile.device_name,
            "~Platform": self.profile.platform,
            "MAC": self.profile.mac,
            "~ZKFPVersion": "10",
            "~OS": "1",
            "~ExtendFmt": "1" if self.profile.record_size == 40 else "0",
            "~UserExtFmt": "1" if self.profile.user_size == 72 else "0",
            "FaceFunOn": "0",
            "CompatOldFirmware": "0" if self.profile.user_size == 72 else "1",
            "~PIN2Width": "9",
        }
        if key not in values:
            return self._ack(session, request, p.ACK_ERROR)
        return self._ack(session, request, data=f"{key}={values[key]}".encode() + b"\x00")

    def _disable(self, session: Session, request: p.Packet) -> Reply:
        self.state.disabled = True
        return self._ack(session, request)

    def _enable(self, session: Session, request: p.Packet) -> Reply:
        self.state.disabled = False
        return self._ack(session, request)

    def _free_sizes(self, session: Session, request: p.Packet) -> Reply:
        sizes = self.state.free_sizes(faces=self.profile.user_size == 72)
        return self._ack(session, request, data=sizes.pack())

    def _get_time(self, session: Session, request: p.Packet) -> Reply:
        value = p.encode_time(self.state.now())
        return self._ack(session, request, data=struct.pack("<I", value))

    def _set_time(self, session: Session, request: p.Packet) -> Reply:
        if len(request.data) < 4:
            raise ProtocolError("SET_TIME needs a u32 time")
        when = p.decode_time(struct.unpack_from("<I", request.data)[0])
        self.state.set_clock(when)
        log.info("clock_set", clock=when.isoformat())
        return self._ack(session, request)

    def _write_user(self, session: Session, request: p.Packet) -> Reply:
        user = unpack_user(request.data, self.profile.name_encoding)
        self._check_numeric(user)
        if not self.state.put_user(user):
            log.info("user_table_full", capacity=self.state.user_capacity)
            return self._ack(session, request, p.ACK_ERROR)
        return self._ack(session, request)

    def _check_numeric(self, user: UserRecord) -> None:
        numeric = (
            self.profile.user_size == 28
            or self.profile.record_size == 16
            or self.profile.event_size == 12
        )
        if numeric and not user.user_id.isdecimal():
            raise ProtocolError(f"this firmware only stores numeric user ids, not {user.user_id!r}")

    def _delete_user(self, session: Session, request: p.Packet) -> Reply:
        if len(request.data) < 2:
            raise ProtocolError("DELETE_USER needs an i16 uid")
        (uid,) = struct.unpack_from("<h", request.data)
        self.state.delete_user(uid)  # deleting an absent user is not an error on terminals
        return self._ack(session, request)

    def _clear_log(self, session: Session, request: p.Packet) -> Reply:
        count = self.state.clear_log()
        log.info("log_cleared", records=count)
        return self._ack(session, request)

    def _clear_data(self, session: Session, request: p.Packet) -> Reply:
        self.state.clear_all()
        log.info("data_cleared")
        return self._ack(session, request)

    def _reg_event(self, session: Session, request: p.Packet) -> Reply:
        if len(request.data) < 4:
            raise ProtocolError("REG_EVENT needs u32 flags")
        (session.event_flags,) = struct.unpack_from("<I", request.data)
        return self._ack(session, request)

    def _prepare_buffer(self, session: Session, request: p.Packet) -> Reply:
        what, fct, _ext = p.parse_prepare_buffer_request(request.data)
        if what == p.CMD_ATTLOG_RRQ:
            buffer = self.state.attendance_buffer(
                self.profile.record_size,
                self.faults.impossible_date_at,
                served_size=self.faults.record_size_override,
            )
        elif what == p.CMD_USERTEMP_RRQ and fct == p.FCT_USER:
            buffer = self.state.users_buffer(self.profile.user_size, self.profile.name_encoding)
        elif what == 7:  # fingerprint templates: this terminal has none
            buffer = struct.pack("<I", 0)
        else:
            raise ProtocolError(f"1503 for unknown data (what={what}, fct={fct})")
        session.read_bytes = 0
        limit = self.profile.direct_data_max
        if len(buffer) <= (DIRECT_DATA_MAX if limit is None else limit):
            session.prepared = None
            return Reply([p.Packet(p.CMD_DATA, session.id, request.reply, buffer)], buffered=True)
        session.prepared = buffer
        reply = self._ack(session, request, data=p.prepare_buffer_reply(len(buffer)))
        reply.buffered = True
        return reply

    def _read_buffer(self, session: Session, request: p.Packet) -> Reply:
        start, size = p.parse_read_buffer_request(request.data)
        buffer = session.prepared
        if buffer is None:
            raise ProtocolError("1504 without a prepared buffer (send 1503 first)")
        if start < 0 or size <= 0 or start >= len(buffer):
            raise ProtocolError(f"1504 range start={start} size={size} outside {len(buffer)} bytes")
        chunk = buffer[start : start + size]
        frames = [
            p.Packet(
                p.CMD_DATA,
                index & p.USHRT_MAX,
                request.reply,
                chunk[offset : offset + p.DATA_FRAME_SIZE],
            )
            for index, offset in enumerate(range(0, len(chunk), p.DATA_FRAME_SIZE))
        ]
        packets = [
            p.Packet(p.CMD_PREPARE_DATA, session.id, request.reply, p.prepare_data(len(chunk))),
            *frames,
            p.Packet(p.ACK_OK, session.id, request.reply),
        ]
        return Reply(packets, buffered=True)

    def _free_data(self, session: Session, request: p.Packet) -> Reply:
        session.prepared = None
        return self._ack(session, request)
