"""Garbage never stops the simulator: it drops the bad packet or connection and keeps serving."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.zk import protocol as p
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.rawclient import RawClient

FUZZ = settings(max_examples=40, deadline=None)
QUIET = 0.05  # seconds to wait for an answer that must not come (UDP garbage)


@pytest.fixture(scope="module")
def sim() -> Iterator[ZkSimulator]:
    with ZkSimulator(seed=1) as simulator:
        simulator.generate(users=3, records=5, seed=1)
        yield simulator


def assert_still_serving(sim: ZkSimulator) -> None:
    for udp in (False, True):
        with RawClient(sim.address, udp=udp) as c:
            assert c.connect().command == p.ACK_OK
            assert c.request(p.CMD_GET_VERSION).data.startswith(b"Ver ")
            assert c.request(p.CMD_EXIT).command == p.ACK_OK


def tcp_send_and_close(sim: ZkSimulator, data: bytes) -> bool:
    """Send bytes on a fresh connection; True when the terminal closed it without answering."""
    with RawClient(sim.address, timeout=2) as c:
        c.send_raw(data)
        return c.is_closed(timeout=2)


@FUZZ
@given(st.binary(min_size=1, max_size=4096))
def test_random_bytes_over_tcp_close_the_connection_only(sim: ZkSimulator, data: bytes) -> None:
    framed_prefix = data[:4] == p.TCP_MAGIC[: len(data[:4])]
    with RawClient(sim.address, timeout=2) as c:
        c.send_raw(data)
        if not framed_prefix:  # a stream that does not start with a TCP top is unusable
            assert c.is_closed(timeout=2)
    assert_still_serving(sim)


@FUZZ
@given(st.binary(min_size=0, max_size=2048))
def test_random_datagrams_are_dropped(sim: ZkSimulator, data: bytes) -> None:
    with RawClient(sim.address, udp=True) as c:
        c.send_raw(data)
        try:
            answer = c.recv(timeout=QUIET)
        except TimeoutError:
            answer = None
    if answer is not None:  # only a well-formed, checksummed packet gets one: "who are you?"
        assert answer.command == p.ACK_UNAUTH and p.Packet.unpack(data).checksum_ok_pyzk()
    assert_still_serving(sim)


KNOWN_COMMANDS = [8, 11, 12, 13, 14, 15, 18, 50, 201, 202, 500, 1001, 1002, 1003, 1013, 1102]
KNOWN_COMMANDS += [1500, 1501, 1502, 1503, 1504, 2001, 0xFFFF]
COMMANDS = st.one_of(st.sampled_from(KNOWN_COMMANDS), st.integers(0, 0xFFFF))


@FUZZ
@given(command=COMMANDS, data=st.binary(max_size=300), udp=st.booleans())
def test_well_formed_requests_with_garbage_data_are_always_answered(
    sim: ZkSimulator, command: int, data: bytes, udp: bool
) -> None:
    with RawClient(sim.address, udp=udp) as c:
        c.connect()
        sent = c.send(command, data)
        if command == p.ACK_OK:  # an event acknowledgement is never answered
            with pytest.raises(TimeoutError):
                c.recv(timeout=QUIET)
        else:
            answer = c.recv()
            assert answer.reply == sent and answer.checksum_ok()
        c.send(p.CMD_EXIT)  # UDP sessions otherwise linger until they expire
    assert_still_serving(sim)


@pytest.mark.parametrize("cut", [1, 4, 7, 8, 12, 15])
def test_truncated_tcp_packets_are_dropped_with_their_connection(
    sim: ZkSimulator, cut: int
) -> None:
    frame = p.tcp_frame(p.Packet(p.CMD_CONNECT).pack())
    with RawClient(sim.address, timeout=2) as c:
        c.send_raw(frame[:cut])
        c.sock.shutdown(socket.SHUT_WR)  # the client gives up half-way through its packet
        assert c.is_closed(timeout=2)
        assert c.chunks == []  # nothing was answered
    assert_still_serving(sim)


def test_oversized_tcp_packet_drops_the_connection(sim: ZkSimulator) -> None:
    top = p.TCP_MAGIC + struct.pack("<I", 64 * 1024 + 1)
    assert tcp_send_and_close(sim, top + b"\x00" * 1024)
    assert_still_serving(sim)


def test_oversized_and_short_datagrams_are_dropped(sim: ZkSimulator) -> None:
    with RawClient(sim.address, udp=True) as c:
        c.send_raw(b"\xe8\x03\x00\x00" + b"\x00" * 60000)  # CONNECT with a wrong checksum
        c.send_raw(b"\xe8\x03\x00")  # shorter than a header
        with pytest.raises(TimeoutError):
            c.recv(timeout=0.3)
    assert_still_serving(sim)
