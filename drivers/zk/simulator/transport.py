"""Writing replies to TCP connections and UDP peers, with the injected faults applied."""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections.abc import Iterator

from drivers.zk import protocol as p
from drivers.zk.simulator.faults import Faults
from drivers.zk.simulator.terminal import Session

RANDOM_SPLIT_MAX = 97  # bytes; "random small splits" cut frames into pieces of 1..97 bytes


class DropConnection(Exception):
    """The drop_after_bytes fault fired: the caller closes the connection."""


def encode(packet: p.Packet, faults: Faults) -> bytes:
    """Packet bytes, with the checksum corrupted when the fault says so."""
    raw = packet.pack()
    if faults.take_corruption():
        (value,) = struct.unpack_from("<H", raw, 2)
        raw = raw[:2] + struct.pack("<H", value ^ 0x5A5A) + raw[4:]
    return raw


def plan_writes(
    frames: list[bytes], mode: str, latency: float, rng: random.Random
) -> Iterator[tuple[float, bytes]]:
    """(delay before, bytes) for each write of one reply.

    Without latency, ``all`` sends the whole reply in one write; with latency, each frame is
    written on its own after the delay, then cut as the mode says.
    """
    if latency > 0 or mode == "frame":
        groups = frames
    else:
        groups = [b"".join(frames)]
    for index, group in enumerate(groups):
        delay = latency if index else 0.0
        for piece in _split(group, mode, rng):
            yield delay, piece
            delay = 0.0


def _split(data: bytes, mode: str, rng: random.Random) -> Iterator[bytes]:
    if mode == "trickle":
        for i in range(len(data)):
            yield data[i : i + 1]
    elif mode == "random":
        position = 0
        while position < len(data):
            step = rng.randint(1, RANDOM_SPLIT_MAX)
            yield data[position : position + step]
            position += step
    else:
        yield data


def _budget(session: Session | None, buffered: bool, faults: Faults) -> int | None:
    limit = faults.drop_after_bytes
    if not buffered or session is None or limit is None:
        return None
    return max(0, limit - session.read_bytes)


class TcpChannel:
    """One accepted TCP connection; a lock keeps replies and pushed events whole."""

    def __init__(
        self, conn: socket.socket, faults: Faults, rng: random.Random, stop: threading.Event
    ) -> None:
        self.conn = conn
        self.faults = faults
        self.rng = rng
        self.stop = stop
        self.lock = threading.Lock()

    def send(self, packets: list[p.Packet], session: Session | None, buffered: bool) -> None:
        """Write the packets; raise ``DropConnection`` when the drop fault fires."""
        with self.lock:
            frames = [p.tcp_frame(encode(packet, self.faults)) for packet in packets]
            budget = _budget(session, buffered, self.faults)
            mode, latency = self.faults.segmentation, self.faults.frame_latency
            for delay, piece in plan_writes(frames, mode, latency, self.rng):
                if delay and self.stop.wait(delay):
                    raise DropConnection("simulator stopping")
                if budget is not None and session is not None:
                    if len(piece) > budget:
                        self.conn.sendall(piece[:budget])
                        raise DropConnection(f"dropped after {self.faults.drop_after_bytes} bytes")
                    budget -= len(piece)
                    session.read_bytes += len(piece)
                self.conn.sendall(piece)

    def close(self, reset: bool = False) -> None:
        """Close the connection; ``reset`` sends an RST instead of a FIN."""
        try:
            if reset:
                self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone: closing is all that is left
        self.conn.close()


class UdpChannel:
    """One UDP peer: each packet is a datagram; segmentation does not apply."""

    def __init__(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        faults: Faults,
        stop: threading.Event,
    ) -> None:
        self.sock = sock
        self.address = address
        self.faults = faults
        self.stop = stop

    def send(self, packets: list[p.Packet], session: Session | None, buffered: bool) -> None:
        """Send one datagram per packet; past the drop budget, the session goes deaf."""
        budget = _budget(session, buffered, self.faults)
        for index, packet in enumerate(packets):
            if index and self.faults.frame_latency and self.stop.wait(self.faults.frame_latency):
                return
            raw = encode(packet, self.faults)
            if budget is not None and session is not None:
                if len(raw) > budget:
                    session.dropped = True
                    return
                budget -= len(raw)
                session.read_bytes += len(raw)
            self.sock.sendto(raw, self.address)
