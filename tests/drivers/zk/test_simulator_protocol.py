"""The simulator answers on the wire exactly like the hardware capture in ZK_PROTOCOL.md."""

from __future__ import annotations

import struct
from datetime import datetime

import pytest

from drivers.zk import protocol as p
from drivers.zk import records as r
from drivers.zk.simulator import DIRECT_DATA_MAX, ZkSimulator
from tests.drivers.zk.rawclient import RawClient

UDP = pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])


def test_tcp_and_udp_share_one_port_number() -> None:
    with ZkSimulator() as sim:
        assert sim.port > 0 and sim.address == ("127.0.0.1", sim.port)
        for udp in (False, True):
            with RawClient(sim.address, udp=udp) as c:
                assert c.connect().command == p.ACK_OK


@UDP
def test_buffered_read_follows_the_hardware_capture(udp: bool) -> None:
    with ZkSimulator(seed=1) as sim:
        sim.generate(users=3, records=60, seed=1)  # 2,404 bytes: PREPARE + 3 DATA frames
        with RawClient(sim.address, udp=udp) as c:
            c.connect()
            request = c.send(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_ATTLOG_RRQ))
            ack = c.recv()
            assert (ack.command, ack.session, ack.reply) == (p.ACK_OK, c.session, request)
            assert len(ack.data) == 13 and ack.data[0] == 0
            assert struct.unpack_from("<II", ack.data, 1) == (2404, 2404)

            request = c.send(p.CMD_READ_BUFFER, p.read_buffer_request(0, 2404))
            prepare = c.recv()
            assert (prepare.command, prepare.session, prepare.reply) == (
                p.CMD_PREPARE_DATA, c.session, request,
            )  # fmt: skip
            assert prepare.data == struct.pack("<II", 2404, 1008)
            frames = [c.recv() for _ in range(3)]
            assert [f.command for f in frames] == [p.CMD_DATA] * 3
            assert [f.session for f in frames] == [0, 1, 2]
            assert [f.reply for f in frames] == [request] * 3
            assert [len(f.data) for f in frames] == [1008, 1008, 388]
            done = c.recv()
            assert (done.command, done.session, done.reply, done.data) == (
                p.ACK_OK, c.session, request, b"",
            )  # fmt: skip
            free = c.request(p.CMD_FREE_DATA)
            assert free.command == p.ACK_OK
    assert all(x.checksum_ok() for x in [ack, prepare, *frames, done, free])
    buffer = b"".join(f.data for f in frames)
    assert struct.unpack_from("<I", buffer)[0] == 2400
    parsed = list(r.iter_attendance(r.buffer_body(buffer), 40))
    assert [(x.user_id, x.timestamp) for x in parsed] == [
        (x.user_id, x.timestamp) for x in sim.records
    ]


@UDP
def test_any_start_and_size_inside_the_prepared_buffer_is_served(udp: bool) -> None:
    with ZkSimulator(seed=2) as sim:
        sim.generate(users=40, seed=2)  # 2,884 bytes of 72-byte users
        with RawClient(sim.address, udp=udp) as c:
            c.connect()
            whole, _ = c.read_buffer(p.CMD_USERTEMP_RRQ, p.FCT_USER, chunk=p.MAX_CHUNK_TCP)
            assert len(whole) == 4 + 40 * 72
            c.request(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_USERTEMP_RRQ, 5))
            for start, size in [(0, 1), (1007, 3), (1500, 5000), (2883, 1)]:
                c.send(p.CMD_READ_BUFFER, p.read_buffer_request(start, size))
                prepare = c.recv()
                expected = whole[start : start + size]
                assert p.parse_prepare_data(prepare.data) == (len(expected), 1008)
                data = b""
                while (packet := c.recv()).command == p.CMD_DATA:
                    data += packet.data
                assert packet.command == p.ACK_OK and data == expected
            assert c.request(p.CMD_READ_BUFFER, p.read_buffer_request(2884, 1)).command == (
                p.ACK_ERROR
            )
            assert c.request(p.CMD_FREE_DATA).command == p.ACK_OK
            assert c.request(p.CMD_READ_BUFFER, p.read_buffer_request(0, 8)).command == (
                p.ACK_ERROR
            )
    users = list(r.iter_users(r.buffer_body(whole), 72))
    assert [u.user_id for u in users] == [u.user_id for u in sim.users]


@UDP
def test_small_buffers_are_answered_with_one_direct_data_packet(udp: bool) -> None:
    with ZkSimulator(seed=3) as sim:
        sim.generate(users=2, records=25, seed=3)  # 1,004 bytes: fits one DATA frame
        with RawClient(sim.address, udp=udp) as c:
            c.connect()
            request = c.send(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_ATTLOG_RRQ))
            direct = c.recv()
            sim.punch("1001")  # 1,044 bytes: now it takes the prepared route
            c.send(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(p.CMD_ATTLOG_RRQ))
            prepared = c.recv()
    assert len(direct.data) == 1004 <= DIRECT_DATA_MAX
    assert (direct.command, direct.session, direct.reply) == (p.CMD_DATA, c.session, request)
    assert prepared.command == p.ACK_OK
    assert p.parse_prepare_buffer_reply(prepared.data) == 1044


@UDP
def test_every_command_the_agent_needs_is_answered(udp: bool) -> None:
    with ZkSimulator(seed=4, serial="SN-4") as sim:
        sim.generate(users=3, records=7, seed=4)
        with RawClient(sim.address, udp=udp) as c:
            assert c.connect().command == p.ACK_OK
            version = c.request(p.CMD_GET_VERSION)
            serial = c.request(p.CMD_OPTIONS_RRQ, b"~SerialNumber\x00")
            unknown = c.request(p.CMD_OPTIONS_RRQ, b"~NoSuchOption\x00")
            sizes = p.FreeSizes.unpack(c.request(p.CMD_GET_FREE_SIZES).data)
            when = datetime(2030, 1, 31, 12, 0, 0)
            c.request(p.CMD_SET_TIME, struct.pack("<I", p.encode_time(when)))
            clock = p.decode_time(struct.unpack("<I", c.request(p.CMD_GET_TIME).data)[0])
            bad_time = c.request(
                p.CMD_SET_TIME, struct.pack("<I", p.encode_time_fields(2030, 2, 31, 0, 0, 0))
            )
            user = r.UserRecord(uid=20, user_id="2020", name="Wei")
            assert c.request(p.CMD_USER_WRQ, r.pack_user(user, 72)).command == p.ACK_OK
            assert c.request(p.CMD_REFRESHDATA).command == p.ACK_OK
            assert c.request(p.CMD_DELETE_USER, struct.pack("<h", 1)).command == p.ACK_OK
            assert c.request(p.CMD_CLEAR_ATTLOG).command == p.ACK_OK
            assert c.request(p.CMD_DISABLEDEVICE).command == p.ACK_OK
            assert c.request(p.CMD_ENABLEDEVICE).command == p.ACK_OK
            assert c.request(0x4242).command == p.ACK_UNKNOWN
            assert c.request(p.CMD_EXIT).command == p.ACK_OK
            after_exit = c.request(p.CMD_GET_VERSION)
    assert version.data == b"Ver 6.60 Apr 28 2015\x00"
    assert serial.data == b"~SerialNumber=SN-4\x00"
    assert unknown.command == p.ACK_ERROR
    assert (sizes.users, sizes.records, sizes.user_capacity, sizes.record_capacity) == (
        3, 7, 10_000, 100_000,
    )  # fmt: skip
    assert (sizes.users_free, sizes.records_free) == (9_997, 99_993)
    assert abs((clock - when).total_seconds()) <= 2
    assert bad_time.command == p.ACK_ERROR
    assert [u.user_id for u in sim.users] == ["1002", "1003", "2020"]
    assert sim.records == []
    assert after_exit.command == p.ACK_UNAUTH


@UDP
def test_comm_key_gates_every_command_until_auth_succeeds(udp: bool) -> None:
    with ZkSimulator(comm_key=99) as sim, RawClient(sim.address, udp=udp) as c:
        connect = c.request(p.CMD_CONNECT)
        c.session = connect.session
        assert connect.command == p.ACK_UNAUTH and connect.session != 0
        assert c.request(p.CMD_GET_VERSION).command == p.ACK_UNAUTH
        assert c.request(p.CMD_AUTH, p.make_commkey(98, c.session)).command == p.ACK_UNAUTH
        assert c.request(p.CMD_AUTH, p.make_commkey(99, c.session)).command == p.ACK_OK
        assert c.request(p.CMD_GET_VERSION).command == p.ACK_OK


@UDP
@pytest.mark.parametrize("event_size", [32, 12])
def test_punch_is_logged_and_pushed_to_registered_clients_only(udp: bool, event_size: int) -> None:
    when = datetime(2024, 2, 29, 7, 58, 1)
    with ZkSimulator(event_size=event_size) as sim:
        sim.add_user("1001", name="Ana")
        with RawClient(sim.address, udp=udp) as listener, RawClient(sim.address, udp=udp) as other:
            listener.connect()
            other.connect()
            assert listener.request(p.CMD_REG_EVENT, struct.pack("<I", p.EF_ATTLOG)).command == (
                p.ACK_OK
            )
            record = sim.punch("1001", state=1, verify=2, when=when)
            event = listener.recv()
            with pytest.raises(TimeoutError):
                other.recv(timeout=0.2)
            listener.send(p.ACK_OK)  # the client's acknowledgement gets no answer
            with pytest.raises(TimeoutError):
                listener.recv(timeout=0.2)
    assert record is not None and sim.records == [record]
    assert (event.command, event.session, event.reply) == (p.CMD_REG_EVENT, p.EF_ATTLOG, 0)
    assert event.checksum_ok() and len(event.data) == event_size
    (live,) = r.unpack_events(event.data)
    assert (live.user_id, live.timestamp, live.verify, live.state) == ("1001", when, 2, 1)


def test_direct_data_max_makes_a_terminal_send_a_whole_log_as_one_data_packet() -> None:
    with ZkSimulator(seed=5, direct_data_max=1 << 20) as sim:
        sim.generate(users=2, records=300, seed=5)
        with RawClient(sim.address) as c:
            c.connect()
            buffer, packets = c.read_buffer(p.CMD_ATTLOG_RRQ)
    assert [x.command for x in packets] == [p.CMD_DATA] and len(buffer) == 4 + 300 * 40
