"""Bytes/s the ZK simulator serves for a 100,000-record buffered read on loopback.

Run: .venv/bin/python bench/simulator.py

A raw client (drivers.zk.protocol only) reads the whole attendance buffer like pyzk does:
1503, then 1504 in 0xFFC0-byte chunks over TCP (16 KiB over UDP), then 1502. The figures
say whether the simulator can be the bottleneck of the driver benchmarks.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from datetime import datetime

import structlog

from drivers.zk import protocol as p
from drivers.zk.simulator import Faults, ZkSimulator

RECORDS = 100_000
RUNS = 3


class Client:
    """The smallest raw client that reads a buffer; counts wire bytes."""

    def __init__(self, address: tuple[str, int], udp: bool) -> None:
        self.udp = udp
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.settimeout(10)
        if udp:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.connect(address)
        self.deframer = p.TcpDeframer()
        self.pending: deque[p.Packet] = deque()
        self.session, self.reply, self.wire = 0, 0, 0

    def send(self, command: int, data: bytes = b"") -> None:
        self.reply = p.next_reply(self.reply)
        raw = p.Packet(command, self.session, self.reply, data).pack()
        self.sock.sendall(raw if self.udp else p.tcp_frame(raw))

    def recv(self) -> p.Packet:
        while not self.pending:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("terminal closed the connection")
            self.wire += len(data)
            if self.udp:
                self.pending.append(p.Packet.unpack(data))
            else:
                self.pending.extend(p.Packet.unpack(x) for x in self.deframer.feed(data))
        return self.pending.popleft()

    def read_attendance(self, chunk: int) -> bytes:
        self.send(p.CMD_CONNECT)
        self.session = self.recv().session
        self.send(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_ATTLOG_RRQ))
        size = p.parse_prepare_buffer_reply(self.recv().data)
        parts = []
        for start in range(0, size, chunk):
            self.send(p.CMD_READ_BUFFER, p.read_buffer_request(start, min(chunk, size - start)))
            while (packet := self.recv()).command != p.ACK_OK:
                if packet.command == p.CMD_DATA:
                    parts.append(packet.data)
        self.send(p.CMD_FREE_DATA)
        self.recv()
        self.send(p.CMD_EXIT)
        self.recv()
        self.sock.close()
        return b"".join(parts)


def measure(sim: ZkSimulator, udp: bool, chunk: int) -> tuple[list[float], int, int]:
    times = []
    size = wire = 0
    for _ in range(RUNS):
        client = Client(sim.address, udp)
        started = time.perf_counter()
        buffer = client.read_attendance(chunk)
        times.append(time.perf_counter() - started)
        size, wire = len(buffer), client.wire
    return times, size, wire


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with ZkSimulator(seed=1, record_capacity=RECORDS) as sim:
        started = time.perf_counter()
        sim.generate(users=500, records=RECORDS, start=datetime(2023, 1, 2), seed=1)
        print(f"generate {RECORDS:,} records, 500 users: {time.perf_counter() - started:.2f} s")
        print(f"whole-buffer reads (1503 + 1504 x n + 1502), {RUNS} runs each:")
        cases = [
            ("tcp", "all", False, p.MAX_CHUNK_TCP),
            ("tcp", "frame", False, p.MAX_CHUNK_TCP),
            ("udp", "-", True, p.MAX_CHUNK_UDP),
        ]
        for index, (transport, mode, udp, chunk) in enumerate(cases):
            if not udp:
                sim.faults = Faults(segmentation=mode)
            times, size, wire = measure(sim, udp, chunk)
            if index == 0:  # the very first 1503 packs every record once; later ones reuse it
                print(f"  first read after generation (packs 100,000 records): {times[0]:.3f} s")
            best = min(times[1:])
            print(
                f"  {transport} segmentation={mode:<5} chunk={chunk:>6}: {size:,} B payload, "
                f"{wire:,} B on the wire, best {best:.3f} s = {size / best / 1e6:5.1f} MB/s, "
                f"{RECORDS / best:,.0f} records/s"
            )


if __name__ == "__main__":
    main()
