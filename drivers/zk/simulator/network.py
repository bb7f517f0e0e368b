"""The network side of the simulated terminal: TCP and UDP on one port number, sessions.

Threads poll a stop event with a short select timeout, so ``stop()`` returns within a fraction
of a second; connections and UDP sessions are bounded in number.
"""

from __future__ import annotations

import errno
import random
import select
import socket
import threading
import time
from dataclasses import dataclass

import structlog

from config.errors import ProtocolError, UsageError
from drivers.zk import protocol as p
from drivers.zk.simulator.faults import Faults
from drivers.zk.simulator.terminal import Channel, Reply, Session, Terminal
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
    """single_session (or the session table) turned a client away."""


class NetworkServer:
    """Serves one ``Terminal`` on TCP and UDP, applying the faults to every connection."""

    def __init__(
        self,
        host: str,
        port: int,
        terminal: Terminal,
        faults: Faults,
        rng: random.Random,
        *,
        max_connections: int,
        udp_session_timeout: float,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._terminal = terminal
        self._faults = faults
        self._rng = rng
        self._max_connections = max_connections
        self._udp_session_timeout = udp_session_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards sessions, channels, threads
        self._sessions: dict[int, Session] = {}
        self._channels: set[TcpChannel] = set()
        self._threads: list[threading.Thread] = []
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self.port = 0

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._tcp is not None

    def start(self) -> int:
        """Bind both sockets, start the threads; return the port number."""
        if self._tcp is not None:
            raise RuntimeError("simulator already started")
        self._tcp, self._udp = self._bind()
        self.port = self._tcp.getsockname()[1]
        self._stop.clear()
        for target, name in (
            (self._accept_loop, "zk-sim-accept"),
            (self._udp_loop, "zk-sim-udp"),
            (self._housekeeping, "zk-sim-housekeeping"),
        ):
            self._spawn(target, name)
        return self.port

    def stop(self) -> None:
        """Close every connection and both sockets, join the threads; idempotent."""
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

    def sessions(self) -> list[SessionInfo]:
        """Current client sessions."""
        with self._lock:
            return [
                SessionInfo(s.id, s.transport, s.address, s.authenticated, s.event_flags)
                for s in self._sessions.values()
            ]

    def push(self, packet: p.Packet) -> None:
        """Send an unsolicited packet (a live event) to every session registered for events."""
        if self._faults.silent:
            return
        with self._lock:
            listeners = [s for s in self._sessions.values() if s.event_flags & p.EF_ATTLOG]
        for session in listeners:
            try:
                session.channel.send([packet], None, False)
            except (OSError, DropConnection) as exc:
                log.info("event_not_delivered", session=session.id, reason=str(exc))

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
        reason = (last.strerror if last is not None else None) or str(last)
        if last is not None and last.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            advice = f"{self.host} is not an address of this machine: choose another --host"
        elif last is not None and last.errno == errno.EACCES:
            advice = "ports below 1024 need root: choose a --port of 1024 or above"
        else:
            advice = "choose another --port or stop what uses it"
        raise UsageError(
            f"cannot listen on {self.host}:{self._requested_port} for TCP and UDP "
            f"({reason}): {advice}"
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
                    self._terminal.state.flush()
                except OSError as exc:
                    log.error(
                        "state_not_saved", path=str(self._terminal.state.path), reason=str(exc)
                    )
