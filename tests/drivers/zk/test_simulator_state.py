"""Simulator state: persistence, generated data, capacities and API validation."""

from __future__ import annotations

import json
import socket
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from config.errors import ConfigError, UsageError
from drivers.zk import protocol as p
from drivers.zk.records import UserRecord, pack_user, unpack_user
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.rawclient import RawClient
from tests.support.wait import wait_for


def test_state_file_keeps_users_log_and_clock_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "terminal.json"
    with ZkSimulator(state_file=path, seed=1) as sim:
        sim.generate(users=5, records=20, seed=1)
        sim.punch("1003", state=1)
        sim.set_clock(datetime(2001, 9, 8, 7, 6, 5))
        users, records = sim.users, sim.records
    assert path.exists() and not path.with_name("terminal.json.tmp").exists()
    with ZkSimulator(state_file=path) as again, RawClient(again.address) as c:
        c.connect()
        sizes = p.FreeSizes.unpack(c.request(p.CMD_GET_FREE_SIZES).data)
        assert again.users == users and again.records == records
        assert abs(again.clock - datetime(2001, 9, 8, 7, 6, 5)) < timedelta(seconds=5)
    assert (sizes.users, sizes.records) == (5, 21)


def test_state_is_written_while_running_not_only_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "terminal.json"
    with ZkSimulator(state_file=path) as sim:
        sim.add_user("1001", name="Ana")
        sim.punch("1001")

        def saved_records() -> int:
            return len(json.loads(path.read_text())["records"]) if path.exists() else 0

        wait_for(lambda: saved_records() == 1, timeout=5, what="state file with the punch")


def test_failed_state_write_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "terminal.json"
    sim = ZkSimulator(state_file=path)
    sim.add_user("1001")
    sim.save()
    before = path.read_text()
    sim.add_user("1002")
    path.with_name("terminal.json.tmp").mkdir()  # the temp file cannot be created
    with pytest.raises(OSError):
        sim.save()
    assert path.read_text() == before  # never half-written: temp file + rename


def test_unreadable_state_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json cannot be read.*delete it"):
        ZkSimulator(state_file=path)


def test_generated_punches_look_like_working_days() -> None:
    sim = ZkSimulator()
    sim.generate(users=50, records=2000, start=datetime(2024, 1, 1), seed=42)
    records = sim.records
    assert len(records) == 2000 and len(sim.users) == 50
    assert len({u.user_id for u in sim.users}) == 50 and all(u.name for u in sim.users)
    stamps = [r.timestamp for r in records if r.timestamp is not None]
    assert len(stamps) == 2000 and stamps == sorted(stamps)
    assert all(s.weekday() < 5 for s in stamps)
    assert all(time(6, 30) <= s.time() <= time(22, 0) for s in stamps)
    assert {r.state for r in records} <= {0, 1, 2, 3, 4, 5}
    assert {r.verify for r in records} <= {0, 1, 2, 15}
    first_of_day: dict[tuple[str, object], int] = {}
    for r in records:
        assert r.timestamp is not None
        first_of_day.setdefault((r.user_id, r.timestamp.date()), r.state)
    assert set(first_of_day.values()) == {0}  # everyone starts the day by clocking in
    again = ZkSimulator()
    again.generate(users=50, records=2000, start=datetime(2024, 1, 1), seed=42)
    assert again.records == records


def test_generated_log_ends_around_the_terminal_clock_by_default() -> None:
    sim = ZkSimulator()
    sim.set_clock(datetime(2025, 3, 14, 12, 0))
    sim.generate(users=20, records=1000, seed=3)
    last = sim.records[-1].timestamp
    assert last is not None and timedelta(0) <= datetime(2025, 3, 14) - last < timedelta(days=10)


def test_capacities_and_firmware_variants_are_validated() -> None:
    with pytest.raises(ValueError, match="record_size must be one of"):
        ZkSimulator(record_size=12)
    sim = ZkSimulator(record_size=16, user_capacity=2)
    with pytest.raises(ValueError, match="numeric user ids only"):
        sim.add_user("A-17")
    first = sim.add_user("17", name="Old")
    assert sim.add_user("17", name="New").uid == first.uid  # same badge: updated in place
    sim.add_user("18")
    with pytest.raises(ValueError, match="user table full"):
        sim.add_user("19")
    with pytest.raises(ValueError, match="not enrolled"):
        sim.punch("99")


def test_name_encoding_must_be_a_known_ascii_compatible_code_page() -> None:
    with pytest.raises(ValueError, match="'klingon' is not a text encoding"):
        ZkSimulator(name_encoding="klingon")
    with pytest.raises(
        ValueError, match=r"'utf-16' does not read ASCII.*ASCII-compatible code page"
    ):
        ZkSimulator(name_encoding="utf-16")
    sim = ZkSimulator(name_encoding="cp1251")
    with pytest.raises(ValueError, match="code page cp1251 lacks; start it with another"):
        sim.add_user("1001", name="李雷")
    assert sim.add_user("1002", name="Ольга").name == "Ольга" and len(sim.users) == 1


def test_names_the_code_page_lacks_are_served_as_question_marks() -> None:
    """A state file written under another code page still serves: a terminal stores what it can."""
    user = UserRecord(uid=1, user_id="1001", name="李 Ольга")
    assert unpack_user(pack_user(user, 72, "cp1251"), "cp1251").name == "? Ольга"
    assert unpack_user(pack_user(user, 72)).name == "李 Ольга"  # utf-8 by default


def test_port_already_in_use_is_a_usage_error_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"127.0.0.1:{port}.*choose another --port"):
            ZkSimulator(port=port).start()


def test_stop_is_prompt_and_idempotent_with_clients_still_connected() -> None:
    sim = ZkSimulator().start()
    with RawClient(sim.address) as c, RawClient(sim.address, udp=True) as u:
        c.connect()
        u.connect()
        sim.stop()
        sim.stop()
        assert c.is_closed(timeout=2)
    assert sim.sessions == []


def test_idlest_udp_session_is_evicted_when_the_table_is_full() -> None:
    with ZkSimulator(max_connections=1) as sim:  # room for 4 UDP sessions
        clients = [RawClient(sim.address, udp=True) for _ in range(5)]
        try:
            for client in clients:
                client.connect()
            assert clients[0].request(p.CMD_GET_VERSION).command == p.ACK_UNAUTH
            assert clients[4].request(p.CMD_GET_VERSION).command == p.ACK_OK
            assert len(sim.sessions) == 4
        finally:
            for client in clients:
                client.close()
