"""Every injected fault is observable from a raw-socket client."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from zk import ZK

from drivers.zk import protocol as p
from drivers.zk import records as r
from drivers.zk.simulator import Faults, ZkSimulator
from drivers.zk.simulator.terminal import Handler
from tests.drivers.zk.rawclient import RawClient, data_segments_in

UDP = pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
QUIET = 0.3  # seconds a client waits to conclude that nothing comes


@dataclass
class Observed:
    """What a raw client saw of one 1504 reply."""

    chunks: list[bytes]  # recv() results
    segments: int  # TCP data segments the kernel received for the reply
    data: bytes  # the DATA payloads joined
    arrivals: list[float]  # monotonic time each packet was decoded


def read_chunk_observed(sim: ZkSimulator, size: int) -> Observed:
    """Prepare the user buffer and read ``size`` bytes of it with one 1504."""
    with RawClient(sim.address) as c:
        c.connect()
        c.request(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_USERTEMP_RRQ, p.FCT_USER))
        first, segments = len(c.chunks), data_segments_in(c.sock)
        c.send(p.CMD_READ_BUFFER, p.read_buffer_request(0, size))
        arrivals, data = [], b""
        while (packet := c.recv()).command != p.ACK_OK:
            arrivals.append(time.monotonic())
            data += packet.data if packet.command == p.CMD_DATA else b""
        arrivals.append(time.monotonic())
        return Observed(c.chunks[first:], data_segments_in(c.sock) - segments, data, arrivals)


def packet_ends(chunks: list[bytes]) -> set[int]:
    """Stream offsets where a TCP frame ends."""
    stream, ends, offset = b"".join(chunks), set(), 0
    while offset < len(stream):
        offset += 8 + struct.unpack_from("<I", stream, offset + 4)[0]
        ends.add(offset)
    return ends


def chunk_ends(chunks: list[bytes]) -> set[int]:
    ends, offset = set(), 0
    for chunk in chunks:
        offset += len(chunk)
        ends.add(offset)
    return ends


USERS_40 = 4 + 40 * 72  # one 1504 reply: PREPARE_DATA, 3 DATA frames, ACK_OK = 5 packets


def users_bytes(sim: ZkSimulator) -> bytes:
    return b"".join(r.pack_user(u, 72) for u in sim.users)


def test_segmentation_all_writes_a_whole_reply_at_once() -> None:
    with ZkSimulator(seed=1, faults=Faults(segmentation="all")) as sim:
        sim.generate(users=40, seed=1)
        seen = read_chunk_observed(sim, USERS_40)
    assert seen.segments == 1 and len(packet_ends(seen.chunks)) == 5
    assert seen.data[4:] == users_bytes(sim)


def test_segmentation_frame_writes_whole_frames_one_by_one() -> None:
    with ZkSimulator(seed=2, faults=Faults(segmentation="frame")) as sim:
        sim.generate(users=40, seed=2)
        seen = read_chunk_observed(sim, USERS_40)
    assert 2 <= seen.segments <= 5
    assert chunk_ends(seen.chunks) <= packet_ends(seen.chunks)  # no read ends inside a frame
    assert seen.data[4:] == users_bytes(sim)


def test_frame_latency_spaces_the_packets_of_a_reply() -> None:
    latency = 0.05
    with ZkSimulator(seed=2, faults=Faults(frame_latency=latency)) as sim:
        sim.generate(users=40, seed=2)
        seen = read_chunk_observed(sim, USERS_40)
    assert seen.segments == 5
    assert seen.arrivals[-1] - seen.arrivals[0] >= 4 * latency * 0.9  # 4 gaps between 5 packets
    assert seen.data[4:] == users_bytes(sim)


@pytest.mark.parametrize("mode", ["random", "trickle"])
def test_random_and_trickle_segmentation_split_frames_into_pieces(mode: str) -> None:
    with ZkSimulator(seed=3, faults=Faults(segmentation=mode)) as sim:
        sim.generate(users=40, seed=3)
        seen = read_chunk_observed(sim, USERS_40)
    assert seen.segments > 5  # more segments than packets: frames were cut
    assert seen.data[4:] == users_bytes(sim)


def test_drop_after_bytes_closes_tcp_mid_read_at_exactly_that_byte() -> None:
    with ZkSimulator(seed=5, faults=Faults(drop_after_bytes=2000)) as sim:
        sim.generate(users=2, records=200, seed=5)
        with RawClient(sim.address) as c:
            c.connect()
            before = len(c.chunks)
            c.send(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_ATTLOG_RRQ))
            assert c.recv().command == p.ACK_OK
            c.send(p.CMD_READ_BUFFER, p.read_buffer_request(0, 8004))
            assert c.is_closed()
            received = sum(len(chunk) for chunk in c.chunks[before:])
        with RawClient(sim.address) as again:
            assert again.connect().command == p.ACK_OK  # the terminal keeps serving
    assert received == 2000


def test_drop_after_bytes_over_udp_stops_answering_the_session() -> None:
    with ZkSimulator(seed=6, faults=Faults(drop_after_bytes=2000)) as sim:
        sim.generate(users=2, records=200, seed=6)
        with RawClient(sim.address, udp=True) as c:
            c.connect()
            c.request(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_ATTLOG_RRQ))
            c.send(p.CMD_READ_BUFFER, p.read_buffer_request(0, 8004))
            got = []
            with pytest.raises(TimeoutError):
                while True:
                    got.append(c.recv(timeout=QUIET))
            assert c.request(p.CMD_GET_VERSION).command == p.ACK_UNAUTH  # session dropped
    assert [x.command for x in got] == [p.CMD_PREPARE_DATA, p.CMD_DATA]
    assert 29 + sum(8 + len(x.data) for x in got) <= 2000


@UDP
def test_silent_terminal_accepts_but_never_answers_until_switched_back(udp: bool) -> None:
    with ZkSimulator(faults=Faults(silent=True)) as sim, RawClient(sim.address, udp=udp) as c:
        c.send(p.CMD_CONNECT)
        with pytest.raises(TimeoutError):
            c.recv(timeout=QUIET)
        sim.faults.silent = False
        assert c.connect().command == p.ACK_OK


def test_refuse_resets_tcp_connections_and_ignores_udp() -> None:
    with ZkSimulator(faults=Faults(refuse=True)) as sim:
        with RawClient(sim.address) as c:
            assert c.is_closed()
        with RawClient(sim.address, udp=True) as c:
            c.send(p.CMD_CONNECT)
            with pytest.raises(TimeoutError):
                c.recv(timeout=QUIET)
        sim.faults = Faults()
        with RawClient(sim.address) as c:
            assert c.connect().command == p.ACK_OK


@UDP
def test_corrupt_checksum_next_spoils_one_packet_and_all_spoils_every_packet(udp: bool) -> None:
    with ZkSimulator(faults=Faults(corrupt_checksum="next")) as sim:
        with RawClient(sim.address, udp=udp) as c:
            first = c.connect()
            second = c.request(p.CMD_GET_VERSION)
            sim.faults.corrupt_checksum = "all"
            third = c.request(p.CMD_GET_VERSION)
            fourth = c.request(p.CMD_GET_TIME)
    assert [x.checksum_ok() for x in (first, second, third, fourth)] == [False, True, False, False]
    assert first.command == p.ACK_OK and third.data.startswith(b"Ver ")


def test_impossible_date_at_sends_31_february_that_pyzk_cannot_parse() -> None:
    with ZkSimulator(seed=7, faults=Faults(impossible_date_at=2)) as sim:
        sim.generate(users=2, records=10, seed=7)
        with RawClient(sim.address) as c:
            c.connect()
            buffer, _ = c.read_buffer(p.CMD_ATTLOG_RRQ)
        zk = ZK("127.0.0.1", port=sim.port, timeout=5, ommit_ping=True).connect()
        with pytest.raises(ValueError, match="day is out of range"):
            zk.get_attendance()  # pyzk #221: one bad record aborts the whole download
        zk.disconnect()
    parsed = list(r.iter_attendance(r.buffer_body(buffer), 40))
    assert [x.timestamp is None for x in parsed] == [i == 2 for i in range(10)]
    raw_time = struct.unpack_from("<I", parsed[2].raw, 27)[0]
    assert p.time_fields(raw_time)[1:3] == (2, 31)
    assert parsed[3].timestamp == sim.records[3].timestamp


def test_clock_jump_is_reported_by_get_time_and_stamps_new_punches() -> None:
    with ZkSimulator() as sim, RawClient(sim.address) as c:
        sim.add_user("1001")
        c.connect()
        sim.jump_clock(datetime(2000, 1, 1))
        reset = p.decode_time(struct.unpack("<I", c.request(p.CMD_GET_TIME).data)[0])
        record = sim.punch("1001")
        sim.jump_clock(timedelta(days=-1))
        earlier = sim.clock
    assert datetime(2000, 1, 1) <= reset <= datetime(2000, 1, 1, 0, 0, 3)
    assert record is not None and record.timestamp is not None
    assert record.timestamp.date() == datetime(2000, 1, 1).date()
    assert earlier.year == 1999


def test_log_at_capacity_records_nothing_and_reports_no_free_space() -> None:
    with ZkSimulator(record_capacity=5, seed=8) as sim:
        sim.generate(users=2, records=5, seed=8)
        with RawClient(sim.address) as c:
            c.connect()
            c.request(p.CMD_REG_EVENT, struct.pack("<I", p.EF_ATTLOG))
            assert sim.punch("1001") is None
            with pytest.raises(TimeoutError):
                c.recv(timeout=QUIET)  # no event for a punch that was not recorded
            sizes = p.FreeSizes.unpack(c.request(p.CMD_GET_FREE_SIZES).data)
        with pytest.raises(ValueError, match="exceed the capacity 5"):
            sim.generate(records=1)
    assert (sizes.records, sizes.record_capacity, sizes.records_free) == (5, 5, 0)
    assert len(sim.records) == 5


def test_single_session_turns_other_clients_away_until_the_first_exits() -> None:
    with ZkSimulator(faults=Faults(single_session=True)) as sim:
        with RawClient(sim.address) as first:
            assert first.connect().command == p.ACK_OK
            with RawClient(sim.address) as second:
                assert second.is_closed()
            with RawClient(sim.address, udp=True) as third:
                third.send(p.CMD_CONNECT)
                with pytest.raises(TimeoutError):
                    third.recv(timeout=QUIET)
            assert first.request(p.CMD_EXIT).command == p.ACK_OK
            with RawClient(sim.address) as fourth:
                assert fourth.connect().command == p.ACK_OK


def test_set_serial_simulates_a_swapped_terminal_mid_session() -> None:
    with ZkSimulator(serial="OLD-1") as sim, RawClient(sim.address) as c:
        c.connect()
        before = c.request(p.CMD_OPTIONS_RRQ, b"~SerialNumber\x00").data
        sim.set_serial("NEW-2")
        after = c.request(p.CMD_OPTIONS_RRQ, b"~SerialNumber\x00").data
    assert (before, after) == (b"~SerialNumber=OLD-1\x00", b"~SerialNumber=NEW-2\x00")


@UDP
def test_unknown_commands_are_answered_ack_unknown_until_cleared(udp: bool) -> None:
    with ZkSimulator() as sim, RawClient(sim.address, udp=udp) as c:
        c.connect()
        events = struct.pack("<I", p.EF_ATTLOG)
        sim.faults.unknown_commands = frozenset({p.CMD_REG_EVENT, p.CMD_ENABLEDEVICE})
        refused = [c.request(p.CMD_REG_EVENT, events), c.request(p.CMD_ENABLEDEVICE)]
        version = c.request(p.CMD_GET_VERSION)  # everything else is still served
        sim.faults.unknown_commands = frozenset()
        accepted = c.request(p.CMD_REG_EVENT, events)
        flags = [s.event_flags for s in sim.sessions]
    assert [x.command for x in refused] == [p.ACK_UNKNOWN, p.ACK_UNKNOWN]
    assert version.command == p.ACK_OK and version.data.startswith(b"Ver ")
    assert accepted.command == p.ACK_OK and flags == [p.EF_ATTLOG]


def test_record_size_override_serves_records_of_an_unknown_size_that_pyzk_misparses() -> None:
    with ZkSimulator(seed=9, faults=Faults(record_size_override=49)) as sim:
        sim.generate(users=2, records=10, seed=9)
        zk = ZK("127.0.0.1", port=sim.port, timeout=5, ommit_ping=True).connect()
        try:
            attendance = zk.get_attendance()  # pyzk 0.9 strides 40 bytes whatever the size
        finally:
            zk.disconnect()
        with RawClient(sim.address) as c:
            c.connect()
            padded, _ = c.read_buffer(p.CMD_ATTLOG_RRQ)
            sizes = p.FreeSizes.unpack(c.request(p.CMD_GET_FREE_SIZES).data)
            sim.faults.record_size_override = 36
            cut, _ = c.read_buffer(p.CMD_ATTLOG_RRQ)
    forty = [r.pack_attendance(record, 40) for record in sim.records]
    assert r.buffer_body(padded) == b"".join(x + b"\0" * 9 for x in forty)
    assert r.buffer_body(cut) == b"".join(x[:36] for x in forty)
    assert sizes.records == 10  # 490 bytes for 10 records: a reader can tell the size is unknown
    assert len(attendance) == 12  # pyzk PR #166: twelve 40-byte "records" out of ten
    assert attendance[1].timestamp != sim.records[1].timestamp


@pytest.mark.parametrize(
    ("switch", "value", "message"),
    [
        ("unknown_commands", 500, "must be a set of command codes"),
        ("unknown_commands", frozenset({"500"}), "no u16 command code"),
        ("unknown_commands", frozenset({0x10000}), "no u16 command code"),
        ("unknown_commands", frozenset({True}), "no u16 command code"),
        ("unknown_commands", frozenset({p.CMD_CONNECT}), "cannot hold CONNECT.*refuse or silent"),
        ("record_size_override", 40, "a size no layout has, not 40.*record_size"),
        ("record_size_override", 0, r"within 1\.\.255 bytes"),
        ("record_size_override", 256, r"within 1\.\.255 bytes"),
        ("record_size_override", 49.0, "must be an integer or None"),
    ],
)
def test_new_switches_refuse_bad_values_and_keep_the_old_one(
    switch: str, value: object, message: str
) -> None:
    faults = Faults(unknown_commands=[p.CMD_REG_EVENT], record_size_override=49)
    with pytest.raises(ValueError, match=message):
        setattr(faults, switch, value)
    with pytest.raises(ValueError, match=message):
        Faults(**{switch: value})  # type: ignore[arg-type]
    assert (faults.unknown_commands, faults.record_size_override) == ({p.CMD_REG_EVENT}, 49)


def test_describe_lists_the_new_switches_only_when_set() -> None:
    faults = Faults()
    assert faults.describe() == {}
    faults.unknown_commands = frozenset({1503, p.CMD_REG_EVENT})
    faults.record_size_override = 49
    assert faults.describe() == {"unknown_commands": [500, 1503], "record_size_override": 49}
    with ZkSimulator() as sim:
        sim.faults = faults  # copied into the live object the terminal reads
        assert sim.faults.describe() == faults.describe()
        sim.faults = Faults()
        assert sim.faults.describe() == {}


def test_intercept_wraps_one_command_until_restored() -> None:
    """Firmware behaviour around one command (tests and training): here a punch lands while
    the terminal answers the count, as on a busy terminal; restoring ends it."""
    with ZkSimulator() as sim:
        sim.add_user("1001")

        def busy(answer: Handler) -> Handler:
            def punching(session: Any, request: p.Packet) -> Any:
                sim.punch("1001")
                return answer(session, request)

            return punching

        restore = sim.intercept(p.CMD_GET_FREE_SIZES, busy)
        with RawClient(sim.address) as c:
            c.connect()
            assert p.FreeSizes.unpack(c.request(p.CMD_GET_FREE_SIZES).data).records == 1
            assert p.FreeSizes.unpack(c.request(p.CMD_GET_FREE_SIZES).data).records == 2
            restore()
            assert p.FreeSizes.unpack(c.request(p.CMD_GET_FREE_SIZES).data).records == 2
        assert len(sim.records) == 2
