"""Request/reply over TCP or UDP with a deadline on every operation and classified errors.

Our own transport rather than pyzk's: pyzk 0.9 reads each reply with a single ``recv`` (so a
reply split across TCP segments breaks it), never verifies checksums, shells out to ``ping`` and
blocks on buffered reads when several DATA frames are already queued (ZK_PROTOCOL.md). Here every
packet goes through the codec's incremental deframer, every checksum is verified, and every wait
has a deadline.
"""

from __future__ import annotations

import collections
import errno
import socket
import time

import structlog

from config.errors import DeviceAuthError, DeviceError, DeviceUnavailable, ProtocolError
from drivers.netaddr import LookupTimeout, Resolver
from drivers.zk import protocol as p
from drivers.zk.extra_codec import build_packet, packet_ok, parse_packet
from drivers.zk.interrupts import BRIEF
from drivers.zk.link import Endpoint, Link

log = structlog.get_logger("drivers.zk")

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_NAMES = {
    p.CMD_CONNECT: "CONNECT",
    p.CMD_AUTH: "AUTH",
    p.CMD_EXIT: "EXIT",
    p.CMD_GET_VERSION: "GET_VERSION",
    p.CMD_OPTIONS_RRQ: "OPTIONS_RRQ",
    p.CMD_GET_FREE_SIZES: "GET_FREE_SIZES",
    p.CMD_GET_TIME: "GET_TIME",
    p.CMD_SET_TIME: "SET_TIME",
    p.CMD_PREPARE_BUFFER: "PREPARE_BUFFER (1503)",
    p.CMD_READ_BUFFER: "READ_BUFFER (1504)",
    p.CMD_FREE_DATA: "FREE_DATA",
    p.CMD_REG_EVENT: "REG_EVENT",
    p.CMD_USER_WRQ: "USER_WRQ",
    p.CMD_DELETE_USER: "DELETE_USER",
    p.CMD_REFRESHDATA: "REFRESHDATA",
    p.CMD_CLEAR_ATTLOG: "CLEAR_ATTLOG",
    p.CMD_ENABLEDEVICE: "ENABLE_DEVICE",
    p.CMD_DISABLEDEVICE: "DISABLE_DEVICE",
}


def command_name(command: int) -> str:
    """Human name of a command code, for messages."""
    return _NAMES.get(command, f"command {command}")


class ChecksumMismatch(ProtocolError):
    """A packet arrived with a wrong checksum (the bytes were damaged on the way)."""


class ZkConnection:
    """A session with one terminal: connect/auth, requests matched by reply number, events queued.

    Every error leaves the connection closed and is raised as ``DeviceUnavailable`` (retry later),
    ``DeviceAuthError`` (fix the comm key) or ``ProtocolError`` (garbage on the wire), with the
    device id, address and what to do in the message.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        comm_key: int = 0,
        timeout: float = 10.0,
        resolver: Resolver | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.comm_key = comm_key
        self.timeout = timeout
        self.session = 0
        self.events: collections.deque[p.Packet] = collections.deque()
        self._reply = p.USHRT_MAX - 1  # so that CONNECT goes out with reply 0, as pyzk does
        self._link = Link(endpoint, resolver or Resolver())
        self.connected = False
        self.generation = 0  # counts successful connects: session-bound state compares it

    @property
    def bytes_received(self) -> int:
        """Bytes received on this connection object so far (all sessions)."""
        return self._link.bytes_received

    # Life cycle.

    def connect(self) -> None:
        """Open the socket, CONNECT and, when the terminal asks for it, AUTH with the comm key."""
        self.close()
        label = self.endpoint.label
        try:
            self._link.open(self.timeout)
        except OSError as exc:
            raise self._unavailable(exc, "connecting") from exc
        self._reply = p.USHRT_MAX - 1
        self.session = 0
        reply = self._exchange(p.CMD_CONNECT, b"", self.timeout)
        self.session = reply.session
        if reply.command == p.ACK_UNAUTH:
            if not self.comm_key:
                self.close()
                raise DeviceAuthError(
                    f"{label} requires a comm key: set comm_key in this device's config to the "
                    "terminal's communication password"
                )
            key = p.make_commkey(self.comm_key, self.session)
            reply = self._exchange(p.CMD_AUTH, key, self.timeout)
            if reply.command == p.ACK_UNAUTH:
                self.close()
                raise DeviceAuthError(
                    f"{label} refused the comm key: check the terminal's communication password "
                    "against comm_key in the config"
                )
        if reply.command != p.ACK_OK:
            self.close()
            raise ProtocolError(
                f"{label} answered CONNECT with code {reply.command}, not ACK_OK: "
                "is this a ZK-protocol terminal on this port?"
            )
        self.connected = True
        self.generation += 1
        log.debug("zk_connected", device=self.endpoint.device_id, session=self.session)

    def close(self, *, say_goodbye: bool = False) -> None:
        """Send EXIT when asked (best effort, short deadline) and close the socket.

        Never raises, but a second Ctrl-C during the goodbye (the socket is closed all the same).
        """
        try:
            if say_goodbye and self.connected:
                # Unanswered (a silent terminal): the session ends all the same.
                self.request_briefly(p.CMD_EXIT)
        finally:
            self.connected = False
            self._link.close()

    # Requests.

    def request(
        self, command: int, data: bytes = b"", *, timeout: float | None = None, retries: int = 0
    ) -> p.Packet:
        """Send a request and return its reply (any reply code; callers check ``command``).

        ``retries`` re-sends a request whose reply came back corrupted; only for reads.
        """
        if not self.connected:
            raise DeviceUnavailable(
                f"{self.endpoint.label} is not connected (an earlier error closed the session): "
                "open it again"
            )
        for attempt in range(retries + 1):
            try:
                return self._exchange(command, data, timeout or self.timeout)
            except ChecksumMismatch:
                if attempt == retries:
                    raise
                # The framing is intact (only the checksum is wrong): ask again; a late copy of
                # the damaged answer would carry the old reply number and be dropped.
                log.warning(
                    "zk_corrupt_reply", device=self.endpoint.device_id, command=command, retry=True
                )
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def request_briefly(self, command: int, data: bytes = b"") -> p.Packet | None:
        """A cleanup request (EXIT, FREE_DATA, ENABLE_DEVICE after a Ctrl-C): ``BRIEF`` deadline
        for the send and the reply, no error raised; None when unanswered (session closed then).

        The terminal may be what hung: waiting its whole timeout (20 s is common) on the way out
        held up the technician's Ctrl-C, and its "did not answer" error replaced "interrupted".
        """
        if not self.connected:
            return None
        brief = min(self.timeout, BRIEF)
        try:
            reply_no = self._next_reply()
            self._send(command, data, reply_no, timeout=brief)
            return self._wait(reply_no, time.monotonic() + brief, command)
        except (OSError, EOFError, TimeoutError, DeviceError):
            self.connected = False
            self._link.close()
            return None

    def begin(self, command: int, data: bytes = b"") -> int:
        """Send a request whose reply spans several packets; return its reply number."""
        reply_no = self._next_reply()
        try:
            self._send(command, data, reply_no)
        except OSError as exc:
            raise self._unavailable(exc, command_name(command)) from exc
        return reply_no

    def receive(self, reply_no: int, deadline: float, command: int) -> p.Packet:
        """The next packet answering ``reply_no`` (events are queued and acknowledged)."""
        return self._wait(reply_no, deadline, command)

    def next_packet(self, deadline: float) -> p.Packet | None:
        """The next unsolicited packet (a queued event first), None at the deadline."""
        if self.events:
            return self.events.popleft()
        try:
            packet = self._receive_checked(deadline, "the wait for live events")
        except TimeoutError:
            return None
        if packet.command == p.CMD_REG_EVENT:
            self.ack_event()
        return packet

    def ack_event(self) -> None:
        """Acknowledge a live event (ACK_OK, reply 0, no answer expected), as pyzk does."""
        try:
            self._send(p.ACK_OK, b"", 0)
        except OSError as exc:
            raise self._unavailable(exc, "acknowledging an event") from exc

    # Internals.

    def _next_reply(self) -> int:
        self._reply = p.next_reply(self._reply)
        return self._reply

    def _send(
        self, command: int, data: bytes, reply_no: int, *, timeout: float | None = None
    ) -> None:
        if self._link.sock is None:
            raise OSError(errno.ENOTCONN, "not connected")
        packet = build_packet(command, self.session, reply_no, data)
        self._link.send(packet, self.timeout if timeout is None else timeout)

    def _exchange(self, command: int, data: bytes, timeout: float) -> p.Packet:
        reply_no = self.begin(command, data)
        return self._wait(reply_no, time.monotonic() + timeout, command)

    def _wait(self, reply_no: int, deadline: float, command: int) -> p.Packet:
        while True:
            try:
                packet = self._receive_checked(deadline, command_name(command))
            except TimeoutError:
                self.close()
                raise DeviceUnavailable(
                    f"{self.endpoint.label} did not answer {command_name(command)} within "
                    f"{self.timeout:g}s: check that the terminal is on and reachable"
                    + (" and that it speaks UDP" if self.endpoint.udp else "")
                    + ", then retry"
                ) from None
            if packet.command == p.CMD_REG_EVENT and packet.reply == 0:
                self.events.append(packet)
                self.ack_event()
                continue
            if packet.reply != reply_no:
                # A late answer to an earlier request that timed out: not ours, drop it.
                log.debug("zk_stale_reply", device=self.endpoint.device_id, reply=packet.reply)
                continue
            return packet

    def _receive_checked(self, deadline: float, doing: str) -> p.Packet:
        try:
            raw = self._link.recv(deadline)
        except TimeoutError:
            raise
        except EOFError:
            self.close()
            raise DeviceUnavailable(
                f"{self.endpoint.label} closed the connection during {doing}: "
                "retry; if it keeps happening, another program may hold the terminal's session"
            ) from None
        except ProtocolError as exc:
            self.close()
            raise ProtocolError(
                f"{self.endpoint.label} sent bytes that are not ZK TCP framing during "
                f"{doing}: {exc}; check the port and that this is a ZK terminal"
            ) from exc
        except OSError as exc:
            if isinstance(exc, socket.timeout | TimeoutError):
                raise TimeoutError from exc
            raise self._unavailable(exc, doing) from exc
        try:
            packet = parse_packet(raw)
        except ProtocolError as exc:  # a UDP datagram shorter than a header
            self.close()
            raise ProtocolError(
                f"{self.endpoint.label} sent a malformed packet during {doing} ({exc}): check "
                "the port and that this is a ZK terminal"
            ) from exc
        if not packet_ok(packet):
            raise ChecksumMismatch(
                f"{self.endpoint.label} sent a damaged packet (bad checksum) during "
                f"{doing}: check the network path (cabling, switch, Wi-Fi bridge); "
                "nothing was stored from it"
            )
        return packet

    def _unavailable(self, exc: OSError, doing: str) -> DeviceUnavailable:
        self.close()
        label = self.endpoint.label
        if isinstance(exc, LookupTimeout):
            return DeviceUnavailable(f"{self.endpoint.device_id}: {exc.strerror}")
        if isinstance(exc, socket.gaierror):
            return DeviceUnavailable(
                f"{label}: the host name cannot be resolved ({exc.strerror}): check host in the "
                "config and the gateway's DNS"
            )
        if isinstance(exc, ConnectionRefusedError):
            return DeviceUnavailable(
                f"{label} refused the connection: check the port ({self.endpoint.port}) and that "
                f"the terminal's {self.endpoint.transport.upper()} service is enabled"
            )
        if isinstance(exc, socket.timeout | TimeoutError):
            what = "accept a connection" if doing == "connecting" else f"take {doing}"
            return DeviceUnavailable(
                f"{label} did not {what} within {self.timeout:g}s: check that the terminal is "
                "powered, cabled and at this IP address"
            )
        if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return DeviceUnavailable(
                f"{label} reset the connection while {doing}: retry; if it persists the terminal "
                "may allow only one session (close the vendor software) or be rebooting"
            )
        if exc.errno in _UNREACHABLE:
            return DeviceUnavailable(
                f"{label} is unreachable ({exc.strerror}): check the network route and the IP "
                "address"
            )
        return DeviceUnavailable(f"{label}: network error while {doing} ({exc}): retry later")
