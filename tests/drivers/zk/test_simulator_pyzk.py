"""Unmodified pyzk 0.9 talks to the simulator as it talks to a real terminal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from zk import ZK
from zk.exception import ZKErrorResponse

from drivers.zk import protocol as p
from drivers.zk import records as r
from drivers.zk.simulator import DIRECT_DATA_MAX, Faults, ZkSimulator
from tests.drivers.zk.rawclient import RawClient
from tests.support.wait import wait_for

KEY = 271828


def client(sim: ZkSimulator, udp: bool, key: int = 0, timeout: float = 5) -> ZK:
    return ZK(
        "127.0.0.1", port=sim.port, timeout=timeout, password=key, force_udp=udp, ommit_ping=True
    )


@contextmanager
def connected(sim: ZkSimulator, udp: bool, key: int = 0, timeout: float = 5) -> Iterator[ZK]:
    conn = client(sim, udp, key, timeout).connect()
    try:
        yield conn
    finally:
        conn.disconnect()


def same_log(pyzk_records: list, sim: ZkSimulator) -> bool:
    got = [(a.user_id, a.timestamp, a.status, a.punch) for a in pyzk_records]
    return got == [(r.user_id, r.timestamp, r.verify, r.state) for r in sim.records]


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
@pytest.mark.parametrize("key", [0, KEY], ids=["nokey", "key"])
def test_pyzk_reads_identity_and_sets_the_clock(udp: bool, key: int) -> None:
    with ZkSimulator(comm_key=key, serial="ZK-SIM-42") as sim, connected(sim, udp, key) as zk:
        assert zk.get_serialnumber() == "ZK-SIM-42"
        assert zk.get_device_name() == "PG-SIM"
        assert zk.get_firmware_version() == "Ver 6.60 Apr 28 2015"
        assert zk.get_platform() == "ZEM560_TFT"
        assert zk.get_mac() == "00:17:61:50:47:01"
        assert abs(zk.get_time() - sim.clock) <= timedelta(seconds=2)
        zk.disable_device()
        zk.set_time(datetime(2021, 6, 30, 23, 59, 58))
        assert abs(sim.clock - datetime(2021, 6, 30, 23, 59, 58)) <= timedelta(seconds=2)
        assert abs(zk.get_time() - datetime(2021, 6, 30, 23, 59, 58)) <= timedelta(seconds=2)
        zk.enable_device()


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
@pytest.mark.parametrize("key", [0, KEY], ids=["nokey", "key"])
def test_pyzk_writes_and_deletes_a_user(udp: bool, key: int) -> None:
    with ZkSimulator(comm_key=key) as sim, connected(sim, udp, key) as zk:
        zk.set_user(uid=77, name="Ines Ito", privilege=14, user_id="7077", card=123456)
        (user,) = sim.users
        assert (user.uid, user.user_id, user.name, user.privilege, user.card) == (
            77, "7077", "Ines Ito", 14, 123456,
        )  # fmt: skip
        zk.delete_user(uid=77)
        assert sim.users == []


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_pyzk_reads_small_buffers_answered_with_one_direct_data_packet(udp: bool) -> None:
    with ZkSimulator(seed=3) as sim:
        sim.generate(users=5, records=25, seed=3)  # 1,004 bytes: the largest direct answer
        assert 4 + 25 * 40 <= DIRECT_DATA_MAX < 4 + 26 * 40
        with connected(sim, udp) as zk:
            users = zk.get_users()
            attendance = zk.get_attendance()
    assert [(u.uid, u.user_id, u.name) for u in users] == [
        (u.uid, u.user_id, u.name) for u in sim.users
    ]
    assert same_log(attendance, sim)


def test_pyzk_reads_multi_frame_buffers_over_tcp_when_frames_are_spaced() -> None:
    """pyzk 0.9 reassembles TCP DATA frames only when each arrives after it read the last."""
    with ZkSimulator(seed=4, faults=Faults(segmentation="frame", frame_latency=0.01)) as sim:
        sim.generate(users=60, records=200, seed=4)
        with connected(sim, udp=False) as zk:
            users = zk.get_users()
            attendance = zk.get_attendance()
    assert len(users) == 60
    assert same_log(attendance, sim)


def test_pyzk_reads_multi_chunk_buffers_over_udp() -> None:
    with ZkSimulator(seed=5) as sim:
        sim.generate(users=300, records=500, seed=5)  # 21,604 B of users: two 16 KiB chunks
        with connected(sim, udp=True) as zk:
            users = zk.get_users()
            attendance = zk.get_attendance()
    assert [u.user_id for u in users] == [u.user_id for u in sim.users]
    assert same_log(attendance, sim)


def test_pyzk_tcp_reassembly_times_out_on_back_to_back_frames_like_on_hardware() -> None:
    """The measured pyzk 0.9 hang (ZK_PROTOCOL.md): frames already waiting block its recv."""
    with ZkSimulator(seed=6) as sim:
        sim.generate(users=2, records=100, seed=6)
        with connected(sim, udp=False, timeout=1) as zk, pytest.raises(OSError):
            zk.get_attendance()


@pytest.mark.parametrize("record_size", [16, 8])
def test_pyzk_reads_old_firmware_record_layouts(record_size: int) -> None:
    with ZkSimulator(record_size=record_size, seed=7) as sim:
        sim.generate(users=4, records=30, seed=7)
        with connected(sim, udp=False) as zk:
            attendance = zk.get_attendance()
    assert same_log(attendance, sim)


def test_pyzk_reads_and_writes_28_byte_users_over_udp() -> None:
    with ZkSimulator(user_size=28, seed=8) as sim:
        sim.generate(users=3, seed=8)
        with connected(sim, udp=True) as zk:
            zk.set_user(uid=9, name="Ana", user_id="2009", card=5)
            users = zk.get_users()
    assert [(u.uid, u.user_id) for u in users] == [
        (1, "1001"),
        (2, "1002"),
        (3, "1003"),
        (9, "2009"),
    ]
    assert sim.users[-1].name == "Ana"


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
@pytest.mark.parametrize("event_size", [32, 12])
def test_pyzk_live_capture_receives_a_punch(udp: bool, event_size: int) -> None:
    with ZkSimulator(event_size=event_size, seed=9) as sim:
        sim.generate(users=3, seed=9)

        def punch_once_registered() -> None:
            wait_for(lambda: any(s.event_flags for s in sim.sessions), what="REG_EVENT")
            sim.punch("1002", state=1, verify=15, when=datetime(2024, 5, 6, 17, 1, 2))

        puncher = threading.Thread(target=punch_once_registered)
        with connected(sim, udp) as zk:
            events = zk.live_capture(new_timeout=5)
            puncher.start()
            event = next(events)
            zk.end_live_capture = True
            assert next(events, "done") == "done"  # pyzk unregisters (REG_EVENT 0) and ends
        puncher.join(timeout=5)
    assert event is not None
    assert (event.user_id, event.timestamp, event.status, event.punch, event.uid) == (
        "1002", datetime(2024, 5, 6, 17, 1, 2), 15, 1, 2,
    )  # fmt: skip
    assert sim.records[-1].user_id == "1002"


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_pyzk_with_a_wrong_comm_key_is_refused(udp: bool) -> None:
    with ZkSimulator(comm_key=KEY) as sim:
        with pytest.raises(ZKErrorResponse, match="Unauthenticated"):
            client(sim, udp, key=KEY + 1).connect()
        with pytest.raises(ZKErrorResponse, match="Unauthenticated"):
            client(sim, udp, key=0).connect()


def test_pyzk_clears_the_attendance_log() -> None:
    with ZkSimulator(seed=10) as sim:
        sim.generate(users=2, records=10, seed=10)
        with connected(sim, udp=False) as zk:
            zk.clear_attendance()
            assert zk.get_attendance() == []
        assert sim.records == []


@pytest.mark.parametrize(("encoding", "name"), [("cp1251", "Ольга Ким"), ("gbk", "李雷")])
def test_pyzk_keeps_names_in_the_terminal_code_page(encoding: str, name: str) -> None:
    with ZkSimulator(name_encoding=encoding) as sim:
        sim.add_user("3003", name="Ana")
        zk = ZK("127.0.0.1", port=sim.port, timeout=5, ommit_ping=True, encoding=encoding)
        zk.connect()
        try:
            zk.set_user(uid=9, name=name, user_id="2009")
            named = {u.user_id: u.name for u in zk.get_users()}
        finally:
            zk.disconnect()
        with RawClient(sim.address) as c:
            c.connect()
            buffer, _ = c.read_buffer(p.CMD_USERTEMP_RRQ, p.FCT_USER)
    assert {u.user_id: u.name for u in sim.users} == {"3003": "Ana", "2009": name}
    assert named == {"3003": "Ana", "2009": name}
    served = r.buffer_body(buffer)[72:]  # the second user: uid 9
    assert served[11 : 11 + 24].rstrip(b"\0") == name.encode(encoding)  # the code page's bytes
