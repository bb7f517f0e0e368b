"""The ZK codec is bit-exact with pyzk 0.9 and robust against arbitrary input."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import datetime

import pytest
import zk.base as pyzk_base
from hypothesis import given, settings
from hypothesis import strategies as st
from zk import ZK

from config.errors import ProtocolError
from drivers.zk import protocol as p
from drivers.zk import records as r

# pyzk 0.9 keeps these as name-mangled private methods; calling them is the only way to compare.
_CHECKSUM = "_ZK__create_checksum"
_HEADER = "_ZK__create_header"


@pytest.fixture(scope="module")
def pyzk() -> Iterator[ZK]:
    client = ZK("127.0.0.1", port=9, timeout=1, ommit_ping=True)
    yield client
    client._ZK__sock.close()


@given(st.binary(max_size=300))
def test_checksum_matches_pyzk_on_any_bytes(pyzk: ZK, data: bytes) -> None:
    expected = struct.unpack("<H", getattr(pyzk, _CHECKSUM)(data))[0]
    assert p.checksum(data) == expected


def test_checksum_maps_both_ones_complement_zeros_like_zkemsdk() -> None:
    assert p.checksum(b"") == 0xFFFE
    assert p.checksum(b"\xff\xff") == 0xFFFE
    assert p.checksum(b"\x01\x00") == 0xFFFD


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFE),
    st.binary(max_size=64),
)
def test_packet_checksum_is_pyzks_for_the_previous_reply_number(
    pyzk: ZK, command: int, session: int, reply: int, data: bytes
) -> None:
    """pyzk checksums the header before incrementing the reply number: we accept that quirk."""
    raw = getattr(pyzk, _HEADER)(command, data, session, reply)
    packet = p.Packet.unpack(raw)
    assert packet.reply == p.next_reply(reply)
    assert packet.checksum_ok_pyzk()
    assert packet.data == data


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary())
def test_packet_round_trips_with_a_correct_checksum(
    command: int, session: int, reply: int, data: bytes
) -> None:
    packet = p.Packet.unpack(p.Packet(command, session, reply, data).pack())
    assert (packet.command, packet.session, packet.reply, packet.data) == (
        command,
        session,
        reply,
        data,
    )
    assert packet.checksum_ok()


def test_packet_with_a_flipped_checksum_bit_is_detected() -> None:
    raw = bytearray(p.Packet(p.ACK_OK, 7, 3, b"abc").pack())
    raw[3] ^= 0x10
    packet = p.Packet.unpack(bytes(raw))
    assert not packet.checksum_ok()
    assert not packet.checksum_ok_pyzk()


def test_packet_shorter_than_a_header_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="shorter than its 8-byte header"):
        p.Packet.unpack(b"\x00" * 7)


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 255))
def test_make_commkey_matches_pyzk(key: int, session: int, ticks: int) -> None:
    if _reverse32(key) + session > 0xFFFFFFFF:
        return  # pyzk itself raises struct.error there; nothing to compare
    assert p.make_commkey(key, session, ticks) == pyzk_base.make_commkey(key, session, ticks)


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)))
def test_time_encoding_matches_pyzk_and_round_trips(pyzk: ZK, when: datetime) -> None:
    when = when.replace(microsecond=0)
    value = p.encode_time(when)
    assert value == pyzk._ZK__encode_time(when)
    assert p.decode_time(value) == when
    assert pyzk._ZK__decode_time(struct.pack("<I", value)) == when
    assert p.decode_time6(p.encode_time6(when)) == when


def test_impossible_dates_raise_protocol_errors_instead_of_value_errors() -> None:
    value = p.encode_time_fields(2023, 2, 30, 8, 0, 0)
    assert p.time_fields(value) == (2023, 2, 30, 8, 0, 0)
    with pytest.raises(ProtocolError, match="impossible date"):
        p.decode_time(value)
    with pytest.raises(ProtocolError, match="impossible date"):
        p.decode_time6(bytes([23, 13, 0, 8, 0, 0]))


def _stream(packets: list[bytes]) -> bytes:
    return b"".join(p.tcp_frame(packet) for packet in packets)


@settings(max_examples=200)
@given(
    st.lists(st.binary(min_size=8, max_size=300), max_size=8),
    st.lists(st.integers(1, 64), min_size=1, max_size=50),
)
def test_deframer_yields_the_same_packets_for_any_chunking(
    packets: list[bytes], cuts: list[int]
) -> None:
    stream = _stream(packets)
    deframer = p.TcpDeframer(max_packet=1024)
    got: list[bytes] = []
    position, index = 0, 0
    while position < len(stream):
        step = cuts[index % len(cuts)]
        got.extend(deframer.feed(stream[position : position + step]))
        position += step
        index += 1
    assert got == packets
    assert deframer.pending == 0


def test_deframer_rejects_a_bad_magic_and_an_absurd_length() -> None:
    with pytest.raises(ProtocolError, match="bad TCP top"):
        p.TcpDeframer().feed(b"\x50\x51")
    with pytest.raises(ProtocolError, match=r"allowed 8\.\.1024"):
        p.TcpDeframer(max_packet=1024).feed(p.TCP_MAGIC + struct.pack("<I", 1025))
    with pytest.raises(ProtocolError, match="allowed 8"):
        p.TcpDeframer().feed(p.TCP_MAGIC + struct.pack("<I", 3))


@given(st.binary(max_size=200))
def test_deframer_never_fails_with_anything_but_protocol_error(data: bytes) -> None:
    deframer = p.TcpDeframer(max_packet=512)
    try:
        for packet in deframer.feed(data):
            assert 8 <= len(packet) <= 512
    except ProtocolError:
        pass
    assert deframer.pending <= 8 + 512


def test_buffered_read_payloads_have_the_hardware_layouts() -> None:
    assert p.prepare_buffer_request(p.CMD_ATTLOG_RRQ) == struct.pack("<bhii", 1, 13, 0, 0)
    assert p.parse_prepare_buffer_request(p.prepare_buffer_request(9, 5)) == (9, 5, 0)
    reply = p.prepare_buffer_reply(4004)
    assert len(reply) == 13 and reply[0] == 0
    assert p.parse_prepare_buffer_reply(reply) == 4004
    assert p.prepare_data(1234) == struct.pack("<II", 1234, 1008)
    assert p.parse_prepare_data(p.prepare_data(1234)) == (1234, 1008)
    assert p.parse_read_buffer_request(p.read_buffer_request(65472, 100)) == (65472, 100)


def test_free_sizes_round_trip_through_the_i32_field_positions() -> None:
    sizes = p.FreeSizes(
        users=3, records=10, user_capacity=100, record_capacity=1000, users_free=97,
        records_free=990, faces=2, face_capacity=50,
    )  # fmt: skip
    raw = sizes.pack()
    assert len(raw) == 92
    fields = struct.unpack("<23i", raw)
    assert (fields[4], fields[8], fields[15], fields[16], fields[18], fields[19]) == (
        3, 10, 100, 1000, 97, 990,
    )  # fmt: skip
    assert (fields[20], fields[22]) == (2, 50)
    assert p.FreeSizes.unpack(raw) == sizes
    assert len(p.FreeSizes(users=1).pack()) == 80
    with pytest.raises(ProtocolError):
        p.FreeSizes.unpack(b"\x00" * 79)


WHEN = datetime(2024, 3, 5, 8, 1, 2)


@pytest.mark.parametrize("size", [40, 16, 8])
def test_attendance_records_round_trip_in_every_layout(size: int) -> None:
    record = r.AttendanceRecord(uid=7, user_id="1007", timestamp=WHEN, verify=15, state=1)
    raw = r.pack_attendance(record, size)
    assert len(raw) == size
    back = r.unpack_attendance(raw)
    assert (back.timestamp, back.verify, back.state, back.status, back.punch) == (
        WHEN,
        15,
        1,
        15,
        1,
    )
    assert back.user_id == ("7" if size == 8 else "1007")
    assert back.raw == raw


def test_attendance_record_with_an_impossible_date_keeps_its_raw_bytes() -> None:
    record = r.AttendanceRecord(uid=1, user_id="1", timestamp=WHEN)
    raw = r.pack_attendance(record, 40, time_raw=p.encode_time_fields(2024, 2, 31, 9, 0, 0))
    back = r.unpack_attendance(raw)
    assert back.timestamp is None and back.raw == raw and back.user_id == "1"


def test_attendance_buffer_helpers_check_sizes() -> None:
    records = [r.AttendanceRecord(i, str(1000 + i), WHEN) for i in range(3)]
    body = b"".join(r.pack_attendance(rec, 16) for rec in records)
    buffer = struct.pack("<I", len(body)) + body
    assert r.buffer_body(buffer) == body
    assert r.record_size_for(len(body), 3) == 16
    assert [x.user_id for x in r.iter_attendance(body, 16)] == ["1000", "1001", "1002"]
    with pytest.raises(ProtocolError, match="matches no known record size"):
        r.record_size_for(len(body), 2)
    with pytest.raises(ProtocolError, match="announces"):
        r.buffer_body(struct.pack("<I", 99) + body)
    with pytest.raises(ProtocolError, match="not a multiple"):
        list(r.iter_attendance(body[:-1], 16))
    with pytest.raises(ProtocolError, match="must be numeric"):
        r.pack_attendance(r.AttendanceRecord(1, "A-1", WHEN), 16)


@pytest.mark.parametrize("size", [72, 28])
def test_users_round_trip_in_both_layouts(size: int) -> None:
    user = r.UserRecord(uid=3, user_id="1003", name="Ann", privilege=14, password="12", card=99)
    back = r.unpack_user(r.pack_user(user, size))
    assert (back.uid, back.user_id, back.name, back.privilege, back.password, back.card) == (
        3, "1003", "Ann", 14, "12", 99,
    )  # fmt: skip


def test_users_written_by_pyzk_set_user_parse_in_both_layouts() -> None:
    """pyzk packs USER_WRQ natively; these are its exact format strings."""
    raw72 = struct.pack(
        "HB8s24s4sx7sx24s", 5, 0, b"pw", b"Zoe", struct.pack("<I", 42), b"", b"2005"
    )
    raw28 = struct.pack("HB5s8sIxBHI", 5, 0, b"pw", b"Zoe", 42, 0, 0, 2005)
    for raw in (raw72, raw28):
        user = r.unpack_user(raw)
        assert (user.uid, user.user_id, user.name, user.card) == (5, "2005", "Zoe", 42)


@pytest.mark.parametrize("size", [32, 12, 36, 52])
def test_live_events_round_trip_in_every_layout(size: int) -> None:
    event = r.LiveEvent(user_id="1001", timestamp=WHEN, verify=1, state=0)
    raw = r.pack_event(event, size)
    assert len(raw) == size
    (back,) = r.unpack_events(raw)
    assert (back.user_id, back.timestamp, back.verify, back.state) == ("1001", WHEN, 1, 0)


def test_several_events_in_one_packet_are_all_returned() -> None:
    events = [r.LiveEvent(str(i), WHEN) for i in (1, 2, 3)]
    got = r.unpack_events(b"".join(r.pack_event(e, 32) for e in events))
    assert [e.user_id for e in got] == ["1", "2", "3"]


def test_event_with_an_impossible_time_or_unknown_size_is_reported() -> None:
    raw = r.pack_event(r.LiveEvent("9", WHEN), 32)[:26] + bytes([24, 13, 0, 1, 2, 3])
    (event,) = r.unpack_events(raw)
    assert event.timestamp is None and event.raw == raw
    with pytest.raises(ProtocolError, match="matches no known event size"):
        r.unpack_events(b"\x00" * 31)
