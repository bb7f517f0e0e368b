"""The simulated ZK terminal: TCP and UDP on one port number, threads, clean stop.

Every loop polls a stop event with a short select timeout, so ``stop()`` returns within a
fraction of a second; connections and UDP sessions are bounded in number.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

import structlog

from config.errors import ProtocolError, UsageError
from drivers.zk import protocol as p
from drivers.zk.records import (
    EVENT_SIZES,
    RECORD_SIZES,
    USER_SIZES,
    AttendanceRecord,
    LiveEvent,
    UserRecord,
    pack_event,
)
from drivers.zk.simulator.faults import FAULT_NAMES, Faults
from drivers.zk.simulator.generator import default_start, make_users, working_day_punches
from drivers.zk.simulator.state import TerminalState
from drivers.zk.simulator.terminal import Channel, Profile, Reply, Session, Terminal
from drivers.zk.simulator.transport import DropConnection, TcpChannel, UdpChannel

log = structlog.get_logger("drivers.zk.simulator")

POLL = 0.1  # seconds every loop waits at most before looking at the stop event
SEND_TIMEOUT = 10.0  # a client that stops reading for this long loses its connection
MAX_REQUEST = 64 * 1024  # the largest request a client sends (USER_WRQ, DATA) is ~1 KiB
FLUSH_INTERVAL = 1.0  # state file written at most this often while running


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A snapshot of one client session, for tests and the CLI."""

    id: int
    transport: str
    address: tuple[str, int]
    authenticated: bool
    event_flags: int


class _Busy(Exception):
    pass


class ZkSimulator:
    """A ZK terminal serving TCP and UDP on the same port, with state, punches and faults."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        serial: str = "SIM0001",
        comm_key: int = 0,
        record_size: int = 40,
        user_size: int = 72,
        event_size: int = 32,
        record_capacity: int = 100_000,
        user_capacity: int = 10_000,
        state_file: str | Path | None = None,
        faults: Faults | None = None,
        seed: int | None = None,
        device_name: str = "PG-SIM",
        firmware: str = "Ver 6.60 Apr 28 2015",
        max_connections: int = 16,
        udp_session_timeout: float = 120.0,
    ) -> None:
        for name, value, allowed in (
            ("record_size", record_size, RECORD_SIZES),
            ("user_size", user_size, USER_SIZES),
            ("event_size", event_size, EVENT_SIZES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value}")
        self.host = host
        self._requested_port = port
        self._faults = faults if faults is not None else Faults()
        self._rng = random.Random(seed)
        self._state = TerminalState(
            serial=serial,
            record_capacity=record_capacity,
            user_capacity=user_capacity,
            path=Path(state_file) if state_file is not None else None,
        )
        self._state.load()
        self.profile = Profile(
            comm_key=comm_key,
            record_size=record_size,
            user_size=user_size,
            event_size=event_size,
            firmware=firmware,
            device_name=device_name,
        )
        self._terminal = Terminal(self._state, self.profile, self._faults)
        self._max_connections = max_connections
        self._udp_session_timeout = udp_session_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards sessions, channels, threads
        self._sessions: dict[int, Session] = {}
        self._channels: set[TcpChannel] = set()
        self._threads: list[threading.Thread] = []
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._port = 0

    # Lifecycle.

    def start(self) -> ZkSimulator:
        """Bind both sockets and start serving; raise ``UsageError`` when the port is taken."""
        if self._tcp is not None:
            raise RuntimeError("simulator already started")
        self._tcp, self._udp = self._bind()
        self._port = self._tcp.getsockname()[1]
        self._stop.clear()
        for target, name in (
            (self._accept_loop, "zk-sim-accept"),
            (self._udp_loop, "zk-sim-udp"),
            (self._housekeeping, "zk-sim-housekeeping"),
        ):
            self._spawn(target, name)
        log.info("simulator_listening", host=self.host, port=self._port, serial=self.serial)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, write the state file; idempotent."""
        if self._tcp is None:
            return
        self._stop.set()
        with self._lock:
            channels = list(self._channels)
            threads = list(self._threads)
        for channel in channels:
            channel.close()
        for thread in threads:
            thread.join(timeout=2.0)
        for sock in (self._tcp, self._udp):
            if sock is not None:
                sock.close()
        self._tcp = self._udp = None
        with self._lock:
            self._sessions.clear()
            self._channels.clear()
            self._threads.clear()
        self._state.flush()
        log.info("simulator_stopped", port=self._port)

    def __enter__(self) -> ZkSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP and UDP port number (0 before ``start()``)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect to."""
        return (self.host, self._port)

    @property
    def faults(self) -> Faults:
        """The live fault switches."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        # Copy into the shared object: the terminal and every channel hold a reference to it.
        for name in FAULT_NAMES:
            setattr(self._faults, name, getattr(value, name))

    # Data.

    @property
    def serial(self) -> str:
        """The serial number the terminal reports."""
        return self._state.serial

    def set_serial(self, serial: str) -> None:
        """Report another serial number from now on (a swapped terminal)."""
        with self._state.lock:
            self._state.serial = serial
        log.info("serial_changed", serial=serial)

    @property
    def users(self) -> list[UserRecord]:
        """Enrolled users by uid."""
        with self._state.lock:
            return [self._state.users[uid] for uid in sorted(self._state.users)]

    @property
    def records(self) -> list[AttendanceRecord]:
        """The attendance log, oldest first as stored."""
        with self._state.lock:
            return list(self._state.records)

    @property
    def sessions(self) -> list[SessionInfo]:
        """Current client sessions."""
        with self._lock:
            return [
                SessionInfo(s.id, s.transport, s.address, s.authenticated, s.event_flags)
                for s in self._sessions.values()
            ]

    def add_user(
        self,
        user_id: str | int,
        name: str = "",
        card: int = 0,
        privilege: int = 0,
        password: str = "",
    ) -> UserRecord:
        """Enrol (or update) a user by badge number; raise ``ValueError`` when it cannot fit."""
        user_id = str(user_id)
        if self._numeric_ids() and not user_id.isdigit():
            raise ValueError(f"this firmware variant stores numeric user ids only, not {user_id!r}")
        with self._state.lock:
            existing = self._state.user_by_id(user_id)
            uid = existing.uid if existing else self._state.next_uid()
            user = UserRecord(uid, user_id, name, privilege, password, card)
            if not self._state.put_user(user):
                raise ValueError(f"user table full ({self._state.user_capacity} users)")
        return user

    def generate(
        self,
        users: int = 0,
        records: int = 0,
        start: datetime | None = None,
        seed: int | None = None,
    ) -> None:
        """Enrol ``users`` staff and append ``records`` working-day punches from ``start``."""
        rng = random.Random(seed if seed is not None else self._rng.random())
        state = self._state
        with state.lock:
            if len(state.users) + users > state.user_capacity:
                raise ValueError(f"{users} more users exceed the capacity {state.user_capacity}")
            if len(state.records) + records > state.record_capacity:
                raise ValueError(
                    f"{records} more records exceed the capacity {state.record_capacity}"
                )
            for user in make_users(users, rng, first_uid=state.next_uid()):
                state.put_user(user)
            staff = [state.users[uid] for uid in sorted(state.users)]
            if records and not staff:
                raise ValueError("punches need users: generate(users=N, ...) or add_user() first")
            begin = start or default_start(state.now().date(), len(staff), records)
            for record in working_day_punches(staff, records, begin, rng):
                state.append(record)
        log.info("data_generated", users=users, records=records)

    def punch(
        self, user_id: str | int, state: int = 0, verify: int = 1, when: datetime | None = None
    ) -> AttendanceRecord | None:
        """Record a punch now (or at ``when``) and push it to registered clients.

        Returns None when the log is at capacity: like a full terminal, nothing is recorded.
        """
        user = self._state.user_by_id(str(user_id))
        if user is None:
            raise ValueError(f"user {user_id} is not enrolled on {self.serial}; add_user() first")
        record = AttendanceRecord(user.uid, user.user_id, when or self._state.now(), verify, state)
        if not self._state.append(record):
            log.warning("log_full", capacity=self._state.record_capacity, user_id=user.user_id)
            return None
        self._push_event(LiveEvent(user.user_id, record.timestamp, verify, state))
        return record

    def clear_log(self) -> None:
        """Delete every attendance record."""
        self._state.clear_log()

    @property
    def clock(self) -> datetime:
        """The terminal's clock (naive local time)."""
        return self._state.now()

    def set_clock(self, when: datetime) -> None:
        """Set the terminal's clock."""
        self._state.set_clock(when)

    def jump_clock(self, to: datetime | timedelta) -> None:
        """Make the clock jump: to a time (e.g. a reset to 2000-01-01) or by an amount."""
        target = to if isinstance(to, datetime) else self._state.now() + to
        self._state.set_clock(target)
        log.info("clock_jumped", clock=target.isoformat())

    def save(self) -> None:
        """Write the state file now (it is also written every second when changed, and at stop)."""
        self._state.save()

    # Serving.

    def _numeric_ids(self) -> bool:
        prof = self.profile
        return prof.user_size == 28 or prof.record_size == 16 or prof.event_size == 12

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        attempts = 20 if self._requested_port == 0 else 1
        last: OSError | None = None
        for _ in range(attempts):
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                tcp.bind((self.host, self._requested_port))
                tcp.listen(16)
                udp.bind((self.host, tcp.getsockname()[1]))
                return tcp, udp
            except OSError as exc:  # UDP twin taken: with port 0, try another number
                tcp.close()
                udp.close()
                last = exc
        raise UsageError(
            f"cannot listen on {self.host}:{self._requested_port} for TCP and UDP ({last}); "
            "choose another --port or stop what uses it"
        )

    def _accept_loop(self) -> None:
        assert self._tcp is not None
        listener = self._tcp
        while not self._stop.is_set():
            if not select.select([listener], [], [], POLL)[0]:
                continue
            try:
                conn, addr = listener.accept()
            except OSError:
                continue
            channel = TcpChannel(conn, self._faults, random.Random(self._rng.random()), self._stop)
            with self._lock:
                full = len(self._channels) >= self._max_connections
                busy = self._faults.single_session and bool(self._sessions)
                if not (full or busy or self._faults.refuse):
                    self._channels.add(channel)
            if full or busy or self._faults.refuse:
                log.info("tcp_turned_away", address=addr[0], full=full, busy=busy)
                channel.close(reset=True)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(SEND_TIMEOUT)
            self._spawn(self._serve_tcp, "zk-sim-conn", channel, addr)

    def _serve_tcp(self, channel: TcpChannel, address: tuple[str, int]) -> None:
        deframer = p.TcpDeframer(max_packet=MAX_REQUEST)
        session: Session | None = None
        try:
            while not self._stop.is_set():
                if not select.select([channel.conn], [], [], POLL)[0]:
                    continue
                chunk = channel.conn.recv(65536)
                if not chunk:
                    break
                for raw in deframer.feed(chunk):
                    session = self._dispatch(raw, session, channel, "tcp", address)
        except ProtocolError as exc:
            log.info("tcp_garbage_dropped", address=address[0], reason=str(exc))
        except (_Busy, DropConnection) as exc:
            log.info("tcp_dropped", address=address[0], reason=str(exc) or "busy")
        except (OSError, ValueError) as exc:  # ValueError: select on a socket closed by stop()
            log.debug("tcp_closed", address=address[0], reason=str(exc))
        except Exception:  # a request that trips a bug must not stop the terminal
            log.exception("tcp_request_failed", address=address[0])
        finally:
            if session is not None:
                self._end(session)
            with self._lock:
                self._channels.discard(channel)
            channel.close()

    def _udp_loop(self) -> None:
        assert self._udp is not None
        sock = self._udp
        while not self._stop.is_set():
            if not select.select([sock], [], [], POLL)[0]:
                continue
            try:
                raw, address = sock.recvfrom(65535)
            except OSError:
                continue
            if self._faults.refuse:
                continue  # a bound UDP port cannot refuse; ignoring is the closest
            with self._lock:
                session = self._udp_session(raw, address)
            channel = (
                session.channel if session else UdpChannel(sock, address, self._faults, self._stop)
            )
            try:
                self._dispatch(raw, session, channel, "udp", address)
            except _Busy:
                log.info("udp_turned_away", address=address[0])
            except OSError as exc:
                log.info("udp_send_failed", address=address[0], reason=str(exc))
            except Exception:  # one bad datagram must not stop the terminal
                log.exception("udp_request_failed", address=address[0])

    def _udp_session(self, raw: bytes, address: tuple[str, int]) -> Session | None:
        if len(raw) < p.HEADER_SIZE:
            return None
        found = self._sessions.get(int.from_bytes(raw[4:6], "little"))
        if found is None or found.transport != "udp" or found.address != address:
            return None
        return found

    def _dispatch(
        self,
        raw: bytes,
        session: Session | None,
        channel: Channel,
        transport: str,
        address: tuple[str, int],
    ) -> Session | None:
        """Handle one request; return the session that owns the channel afterwards."""
        try:
            packet = p.Packet.unpack(raw)
        except ProtocolError:
            log.debug("short_packet_dropped", address=address[0], size=len(raw))
            return session
        if not packet.checksum_ok_pyzk():
            log.info("bad_checksum_dropped", address=address[0], command=packet.command)
            return session
        if self._faults.silent or (session is not None and session.dropped):
            return session
        reply: Reply | None
        if packet.command == p.CMD_CONNECT:
            if session is not None:
                self._end(session)
            session = self._new_session(transport, address, channel)
            reply = self._terminal.connect(session, packet)
        elif session is None:
            if packet.command == p.ACK_OK:
                return None
            reply = Reply([p.Packet(p.ACK_UNAUTH, packet.session, packet.reply)])
        else:
            session.last_seen = time.monotonic()
            reply = self._terminal.handle(session, packet)
        if reply is not None:
            if reply.end_session and session is not None:
                self._end(session)  # before the reply: the client may reconnect at once
                channel.send(reply.packets, session, reply.buffered)
                return None
            channel.send(reply.packets, session, reply.buffered)
        if session is not None and session.dropped:
            log.info("udp_session_dropped", session=session.id, bytes=session.read_bytes)
            self._end(session)
        return session

    def _new_session(self, transport: str, address: tuple[str, int], channel: Channel) -> Session:
        with self._lock:
            if self._faults.single_session and self._sessions:
                raise _Busy("another client holds the only session")
            udp = [s for s in self._sessions.values() if s.transport == "udp"]
            if transport == "udp" and len(udp) >= self._max_connections * 4:
                # UDP clients that vanished without EXIT would fill the table: evict the idlest.
                idlest = min(udp, key=lambda s: s.last_seen)
                del self._sessions[idlest.id]
                log.info("udp_session_evicted", session=idlest.id)
            sid = self._rng.randrange(1, p.USHRT_MAX)
            while sid in self._sessions:
                sid = self._rng.randrange(1, p.USHRT_MAX)
            session = Session(sid, transport, address, channel, last_seen=time.monotonic())
            self._sessions[sid] = session
        log.info("session_opened", session=sid, transport=transport, address=address[0])
        return session

    def _end(self, session: Session) -> None:
        with self._lock:
            removed = self._sessions.pop(session.id, None) is session
        if removed:
            log.info("session_closed", session=session.id, transport=session.transport)

    def _push_event(self, event: LiveEvent) -> None:
        if self._faults.silent:
            return
        packet = p.Packet(
            p.CMD_REG_EVENT, p.EF_ATTLOG, 0, pack_event(event, self.profile.event_size)
        )
        with self._lock:
            listeners = [s for s in self._sessions.values() if s.event_flags & p.EF_ATTLOG]
        for session in listeners:
            try:
                session.channel.send([packet], None, False)
            except (OSError, DropConnection) as exc:
                log.info("event_not_delivered", session=session.id, reason=str(exc))

    def _housekeeping(self) -> None:
        last_flush = time.monotonic()
        while not self._stop.wait(POLL * 5):
            now = time.monotonic()
            with self._lock:
                stale = [
                    s
                    for s in self._sessions.values()
                    if s.transport == "udp" and now - s.last_seen > self._udp_session_timeout
                ]
            for session in stale:
                self._end(session)
            if now - last_flush >= FLUSH_INTERVAL:
                last_flush = now
                try:
                    self._state.flush()
                except OSError as exc:
                    log.error("state_not_saved", path=str(self._state.path), reason=str(exc))
