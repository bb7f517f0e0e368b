"""The driver's fast paths agree with the reference codec, and times are converted honestly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import ProtocolError
from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod
from drivers.timeutil import localize
from drivers.zk import protocol as p
from drivers.zk.extra_codec import (
    build_packet,
    fast_checksum,
    iter_record_fields,
    pack_user_encoded,
    packet_ok,
    parse_packet,
    unpack_user_encoded,
    user_key_text,
)
from drivers.zk.punches import INVALID_DEVICE_TIME, PunchBuilder
from drivers.zk.records import (
    AttendanceRecord,
    LiveEvent,
    UserRecord,
    pack_attendance,
    unpack_attendance,
)
from tests.drivers.zk.driver_support import TZ


@given(st.binary(max_size=3000))
def test_fast_checksum_equals_the_reference_checksum(data: bytes) -> None:
    assert fast_checksum(data) == p.checksum(data)


@pytest.mark.parametrize("fill", [b"\x00", b"\xff", b"\x01", b"\xfe"])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 1008, 1009])
def test_fast_checksum_equals_the_reference_on_edge_values(fill: bytes, length: int) -> None:
    assert fast_checksum(fill * length) == p.checksum(fill * length)


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFE),
    st.binary(max_size=200),
)
def test_built_packets_match_the_codec_and_verify(
    command: int, session: int, reply: int, data: bytes
) -> None:
    raw = build_packet(command, session, reply, data)
    assert raw == p.Packet(command, session, reply, data).pack()
    packet = parse_packet(raw)
    assert packet_ok(packet) and (packet.command, packet.data) == (command, data)
    damaged = raw[:2] + bytes([raw[2] ^ 0x5A, raw[3]]) + raw[4:]
    assert not packet_ok(parse_packet(damaged))


def test_packets_with_pyzk_off_by_one_checksums_are_accepted() -> None:
    packet = p.Packet(p.ACK_OK, 7, 5, b"abc")
    pyzk_style = p.Packet(
        p.ACK_OK, 7, 5, b"abc", checksum=p.Packet(p.ACK_OK, 7, 4, b"abc").expected_checksum()
    )
    assert packet_ok(parse_packet(packet.pack())) and packet_ok(pyzk_style)


times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))
records = st.builds(
    AttendanceRecord,
    uid=st.integers(1, 0xFFFF),
    user_id=st.integers(0, 99_999_999).map(str),
    timestamp=times.map(lambda t: t.replace(microsecond=0)),
    verify=st.integers(0, 255),
    state=st.integers(0, 255),
)


@settings(max_examples=50)
@given(st.lists(records, max_size=30), st.sampled_from([40, 16, 8]))
def test_bulk_record_fields_equal_the_reference_parser(
    recs: list[AttendanceRecord], size: int
) -> None:
    body = b"".join(pack_attendance(r, size) for r in recs)
    fast = list(iter_record_fields(body, size))
    reference = [unpack_attendance(body[i : i + size]) for i in range(0, len(body), size)]
    assert len(fast) == len(reference)
    for (key, verify, value, state), ref in zip(fast, reference, strict=True):
        assert user_key_text(key) == ref.user_id
        assert (verify, state) == (ref.verify, ref.state)
        assert p.decode_time(value) == ref.timestamp


def test_a_partial_or_unknown_record_layout_is_refused() -> None:
    with pytest.raises(ProtocolError, match="49"):
        list(iter_record_fields(b"\0" * 98, 49))
    with pytest.raises(ProtocolError, match="multiple of 40"):
        list(iter_record_fields(b"\0" * 41, 40))


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-8", "José Müller"), ("cp1251", "Иван Петров"), ("gbk", "王小明"), ("latin-1", "Zoë")],
)
@pytest.mark.parametrize("size", [72, 28])
def test_user_names_round_trip_in_the_configured_encoding(
    encoding: str, name: str, size: int
) -> None:
    user = UserRecord(uid=3, user_id="1042", name=name, card=123456)
    raw = pack_user_encoded(user, size, encoding)
    assert len(raw) == size
    back = unpack_user_encoded(raw, encoding)
    limit = 24 if size == 72 else 8
    assert back.name == _fitting(name, encoding, limit)
    assert (back.uid, back.user_id, back.card) == (3, "1042", 123456)


def _fitting(name: str, encoding: str, limit: int) -> str:
    while len(name.encode(encoding)) > limit:
        name = name[:-1]
    return name


def test_long_multibyte_names_are_cut_at_a_character_boundary() -> None:
    raw = pack_user_encoded(UserRecord(1, "1", "Ωμέγα" * 5), 72, "utf-8")
    name = unpack_user_encoded(raw, "utf-8").name
    assert "\ufffd" not in name and len(name.encode()) <= 24 and name.startswith("Ωμέγα")


def reference_punch(builder: PunchBuilder, rec: AttendanceRecord, raw: bytes) -> Punch:
    """The punch built the slow, obvious way (dataclass __init__, localize per record)."""
    assert rec.timestamp is not None
    utc, offset, flags = localize(rec.timestamp, TZ)
    state = PunchState.from_zk(rec.state)
    if state is PunchState.UNKNOWN:
        flags = flags | {Suspect.UNKNOWN_STATE}
    return Punch(
        device_id=builder.device_id,
        device_serial=builder.serial,
        employee=rec.user_id,
        device_time=rec.timestamp,
        time_utc=utc,
        utc_offset_minutes=offset,
        state=state,
        state_code=rec.state,
        verify=VerifyMethod.from_zk(rec.verify),
        verify_code=rec.verify,
        source=Source.DEVICE,
        suspect=frozenset(flags),
        raw=raw if flags else None,
    )


dst_times = st.datetimes(min_value=datetime(2024, 3, 30), max_value=datetime(2024, 4, 1)) | (
    st.datetimes(min_value=datetime(2024, 10, 26), max_value=datetime(2024, 10, 28))
)


@settings(max_examples=40)
@given(
    st.lists(
        st.builds(
            AttendanceRecord,
            uid=st.integers(1, 50),
            user_id=st.integers(1, 50).map(str),
            timestamp=(times | dst_times).map(lambda t: t.replace(microsecond=0)),
            verify=st.sampled_from([0, 1, 2, 15, 99]),
            state=st.sampled_from([0, 1, 2, 3, 4, 5, 9]),
        ),
        max_size=40,
    )
)
def test_fast_punch_building_equals_building_each_punch_the_obvious_way(
    recs: list[AttendanceRecord],
) -> None:
    builder = PunchBuilder("lobby-1", "SN1", TZ)
    body = b"".join(pack_attendance(r, 40) for r in recs)
    fast = builder.from_log(body, 40)
    slow = [reference_punch(builder, r, body[i * 40 : i * 40 + 40]) for i, r in enumerate(recs)]
    assert fast == slow
    assert all(type(a) is Punch for a in fast)


def test_dst_fold_and_gap_times_are_flagged_not_guessed() -> None:
    builder = PunchBuilder("lobby-1", "SN1", TZ)
    fold = AttendanceRecord(1, "7", datetime(2024, 10, 27, 2, 30), 1, 0)
    gap = AttendanceRecord(1, "7", datetime(2024, 3, 31, 2, 30), 1, 1)
    normal = AttendanceRecord(1, "7", datetime(2024, 10, 27, 3, 30), 1, 1)
    body = b"".join(pack_attendance(r, 40) for r in (fold, gap, normal))
    a, b, c = builder.from_log(body, 40)
    assert a.suspect == {Suspect.TIME_AMBIGUOUS} and a.utc_offset_minutes == 120
    assert a.time_utc == datetime(2024, 10, 27, 0, 30, tzinfo=UTC) and a.raw is not None
    assert b.suspect == {Suspect.TIME_NONEXISTENT}
    assert c.suspect == frozenset() and c.time_utc == datetime(2024, 10, 27, 2, 30, tzinfo=UTC)


def test_impossible_date_is_kept_flagged_with_its_raw_bytes() -> None:
    good = pack_attendance(AttendanceRecord(1, "7", datetime(2024, 2, 28, 9), 1, 0), 40)
    bad = pack_attendance(
        AttendanceRecord(1, "7", None, 1, 0),
        40,
        time_raw=p.encode_time_fields(2024, 2, 31, 9, 0, 0),
    )
    first, second, third = PunchBuilder("lobby-1", "SN1", TZ).from_log(good + bad + good, 40)
    assert first == third and first.suspect == frozenset()
    assert second.suspect == {Suspect.TIME_INVALID}
    assert second.time_utc is None and second.utc_offset_minutes is None
    assert second.device_time == INVALID_DEVICE_TIME and second.raw == bad
    assert second.identity_fields()[2] == "raw:" + bad.hex()


def test_live_events_become_live_punches_with_local_time_converted() -> None:
    builder = PunchBuilder("lobby-1", "SN1", TZ)
    when = datetime(2024, 7, 1, 8, 0, 5)
    (punch,) = builder.from_events([LiveEvent("42", when, 15, 1)])
    assert punch.source is Source.LIVE and punch.verify is VerifyMethod.FACE
    assert punch.time_utc == datetime(2024, 7, 1, 6, 0, 5, tzinfo=UTC)
    (invalid,) = builder.from_events([LiveEvent("42", None, 1, 0, b"raw")])
    assert invalid.suspect == {Suspect.TIME_INVALID} and invalid.source is Source.LIVE


def test_clock_drift_flag_is_added_to_every_punch_of_a_batch() -> None:
    recs = [
        AttendanceRecord(1, "7", datetime(2024, 5, 1, 8) + timedelta(minutes=i), 1, 0)
        for i in range(3)
    ]
    body = b"".join(pack_attendance(r, 40) for r in recs)
    punches = PunchBuilder("lobby-1", "SN1", TZ).from_log(
        body, 40, flags=frozenset({Suspect.CLOCK_DRIFT})
    )
    assert all(p.suspect == {Suspect.CLOCK_DRIFT} and p.raw for p in punches)


def test_eight_byte_records_map_slots_to_user_ids() -> None:
    body = pack_attendance(AttendanceRecord(5, "5", datetime(2024, 5, 1, 8), 1, 0), 8)
    (mapped,) = PunchBuilder("lobby-1", "SN1", TZ).from_log(body, 8, uid_map={5: "1005"})
    (unmapped,) = PunchBuilder("lobby-1", "SN1", TZ).from_log(body, 8)
    assert mapped.employee == "1005" and unmapped.employee == "5"
