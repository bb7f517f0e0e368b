"""A small raw ZK client for tests: speaks the protocol through ``drivers.zk.protocol`` only.

It records every ``recv()`` chunk so tests can observe how the terminal segmented its writes.
"""

from __future__ import annotations

import socket
import struct
from collections import deque

from drivers.zk import protocol as p

# Offset of tcpi_data_segs_in in Linux's struct tcp_info (include/uapi/linux/tcp.h, >= 4.6).
_TCPI_DATA_SEGS_IN = 152


def data_segments_in(sock: socket.socket) -> int:
    """TCP segments carrying data that this socket received, as counted by the kernel.

    Unlike recv() chunk sizes, this does not depend on when the test thread gets scheduled.
    """
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("<I", info, _TCPI_DATA_SEGS_IN)[0])


class Closed(Exception):
    """The terminal closed (or reset) the connection."""


class RawClient:
    """One TCP or UDP client session against a terminal on 127.0.0.1."""

    def __init__(self, address: tuple[str, int], *, udp: bool = False, timeout: float = 3.0):
        self.udp = udp
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.refused = False  # a reset can already surface in connect() on a busy machine
        try:
            self.sock.connect(address)
        except (ConnectionResetError, ConnectionRefusedError):
            self.refused = True
        self.deframer = p.TcpDeframer()
        self.pending: deque[p.Packet] = deque()
        self.chunks: list[bytes] = []  # every recv() result, in order
        self.session = 0
        self.reply = p.USHRT_MAX - 1  # like pyzk: the first request carries reply 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, raw: bytes) -> None:
        """Send bytes as they are (TCP stream bytes or one datagram)."""
        if self.udp:
            self.sock.send(raw)
        else:
            self.sock.sendall(raw)

    def send(self, command: int, data: bytes = b"", *, session: int | None = None) -> int:
        """Send one request with the next reply number; return that number."""
        self.reply = p.next_reply(self.reply)
        packet = p.Packet(command, self.session if session is None else session, self.reply, data)
        raw = packet.pack()
        self.send_raw(raw if self.udp else p.tcp_frame(raw))
        return self.reply

    def recv(self, timeout: float | None = None) -> p.Packet:
        """The next packet; raise ``TimeoutError`` or ``Closed``."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self.pending:
            if self.refused:
                raise Closed("connection refused or reset while connecting")
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError as exc:
                raise Closed("connection reset") from exc
            if not data:
                raise Closed("connection closed")
            self.chunks.append(data)
            if self.udp:
                self.pending.append(p.Packet.unpack(data))
            else:
                self.pending.extend(p.Packet.unpack(raw) for raw in self.deframer.feed(data))
        return self.pending.popleft()

    def request(self, command: int, data: bytes = b"") -> p.Packet:
        """Send a request and return the first packet answering it."""
        self.send(command, data)
        return self.recv()

    def connect(self, key: int = 0) -> p.Packet:
        """CONNECT, then AUTH when the terminal asks for the comm key."""
        reply = self.request(p.CMD_CONNECT)
        self.session = reply.session
        if reply.command == p.ACK_UNAUTH:
            reply = self.request(p.CMD_AUTH, p.make_commkey(key, self.session))
        return reply

    def read_buffer(
        self, what: int, fct: int = 0, chunk: int = p.MAX_CHUNK_TCP
    ) -> tuple[bytes, list[p.Packet]]:
        """A whole buffered read (1503, 1504 x n, 1502): the buffer and every packet seen."""
        seen = [self.request(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(what, fct))]
        if seen[0].command == p.CMD_DATA:
            return seen[0].data, seen
        assert seen[0].command == p.ACK_OK, seen[0]
        size = p.parse_prepare_buffer_reply(seen[0].data)
        parts = []
        for start in range(0, size, chunk):
            self.send(p.CMD_READ_BUFFER, p.read_buffer_request(start, min(chunk, size - start)))
            while True:
                packet = self.recv()
                seen.append(packet)
                if packet.command == p.CMD_DATA:
                    parts.append(packet.data)
                elif packet.command == p.ACK_OK:
                    break
                else:
                    assert packet.command == p.CMD_PREPARE_DATA, packet
        seen.append(self.request(p.CMD_FREE_DATA))
        return b"".join(parts), seen

    def is_closed(self, timeout: float = 3.0) -> bool:
        """True when the peer closes or resets within ``timeout`` (bytes received are kept)."""
        try:
            while True:
                self.recv(timeout)
        except Closed:
            return True
        except TimeoutError:
            return False
