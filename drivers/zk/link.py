"""Where a terminal is, and the one socket to it: TCP packets deframed, UDP datagrams packets."""

from __future__ import annotations

import collections
import socket
import time
from dataclasses import dataclass

from drivers.netaddr import Resolver
from drivers.zk import protocol as p
from drivers.zk.interrupts import WAKE, connect_tcp

_RECV_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a terminal is and what we call it in messages."""

    device_id: str
    host: str
    port: int = 4370
    transport: str = "tcp"

    @property
    def label(self) -> str:
        """``lobby-1 (10.0.0.20:4370)``, the prefix of every message about this terminal."""
        return f"{self.device_id} ({self.host}:{self.port})"

    @property
    def udp(self) -> bool:
        return self.transport == "udp"


class Link:
    """One socket to the terminal; TCP packets are deframed, UDP datagrams are packets."""

    def __init__(self, endpoint: Endpoint, resolver: Resolver) -> None:
        self.endpoint = endpoint
        self.resolver = resolver  # a host name's lookup is bounded by the device's timeout
        self.sock: socket.socket | None = None
        self._deframer = p.TcpDeframer()
        self._ready: collections.deque[bytes] = collections.deque()
        self._buffer = bytearray(_RECV_SIZE)
        self.bytes_received = 0  # on the wire, for logs and the tail-read tests

    def open(self, timeout: float) -> None:
        host, port = self.endpoint.host, self.endpoint.port
        if self.endpoint.udp:
            # IPv4 only, as before: with no handshake, a name's IPv6 address (tried first)
            # would swallow every datagram of a terminal that speaks IPv4.
            info = self.resolver.addresses(
                host, port, timeout, family=socket.AF_INET, kind=socket.SOCK_DGRAM
            )
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # A connected UDP socket reports ICMP "port unreachable" as ConnectionRefusedError.
            sock.connect(info[0][4])
        else:
            sock = connect_tcp(host, port, timeout, self.resolver)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock

    def send(self, packet: bytes, timeout: float) -> None:
        assert self.sock is not None
        self.sock.settimeout(timeout)  # recv() may have left a nearly spent deadline behind
        if self.endpoint.udp:
            self.sock.send(packet)
        else:
            self.sock.sendall(p.tcp_frame(packet))

    def recv(self, deadline: float) -> bytes:
        """The next packet; ``TimeoutError`` at the deadline, ``EOFError`` when closed.

        Waits in ``WAKE`` slices: a Ctrl-C is never held up by the deadline (see interrupts).
        """
        sock = self.sock
        assert sock is not None
        while not self._ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(min(remaining, WAKE))
            try:
                if self.endpoint.udp:
                    datagram = sock.recv(65535)
                    self.bytes_received += len(datagram)
                    return datagram
                n = sock.recv_into(self._buffer)
            except TimeoutError:
                continue  # the loop (and a pending Ctrl-C) decides, not this slice
            if n == 0:
                raise EOFError
            self.bytes_received += n
            self._ready.extend(self._deframer.feed(memoryview(self._buffer)[:n]))
        return self._ready.popleft()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._ready.clear()
        self._deframer = p.TcpDeframer()
