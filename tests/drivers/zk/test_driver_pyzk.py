"""Compatibility with unmodified pyzk 0.9 where pyzk works: same log, same users, same clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from zk import ZK

from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import driver_for, simulator

KEY = 4242


@contextmanager
def pyzk(sim: ZkSimulator, udp: bool = False, key: int = 0) -> Iterator[ZK]:
    conn = ZK(
        "127.0.0.1", port=sim.port, timeout=5, password=key, force_udp=udp, ommit_ping=True
    ).connect()
    try:
        yield conn
    finally:
        conn.disconnect()


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_driver_reads_the_same_log_as_pyzk(udp: bool) -> None:
    # 24 records of 40 bytes fit one DATA frame: the one form pyzk 0.9 reads without hanging.
    with simulator(users=4, records=24, comm_key=KEY) as sim:
        with pyzk(sim, udp, KEY) as zk:
            theirs = [(a.user_id, a.timestamp, a.punch, a.status) for a in zk.get_attendance()]
        driver = driver_for(sim, "udp" if udp else "tcp", comm_key=KEY)
        driver.open()
        punches, _ = driver.read_new(None)
        driver.close()
    ours = [(p.employee, p.device_time, p.state_code, p.verify_code) for p in punches]
    assert ours == theirs and len(ours) == 24


def test_users_written_by_the_driver_are_read_by_pyzk_and_back() -> None:
    with simulator() as sim:
        driver = driver_for(sim)
        driver.open()
        driver.upsert_user("501", "Rosa Silva", card=123456, password="12")
        driver.close()
        with pyzk(sim) as zk:
            (theirs,) = zk.get_users()
            assert (theirs.user_id, theirs.name, theirs.card, theirs.password) == (
                "501",
                "Rosa Silva",
                123456,
                "12",
            )
            zk.set_user(uid=7, name="Omar Ito", user_id="777", card=55)
        driver.open()
        ours = {u.user_id: u for u in driver.users()}
        assert ours["777"].name == "Omar Ito" and ours["777"].uid == 7 and ours["777"].card == 55
        assert driver.delete_user("777") is True
        driver.close()
        with pyzk(sim) as zk:
            assert [u.user_id for u in zk.get_users()] == ["501"]


def test_driver_and_pyzk_read_the_same_clock_and_serial() -> None:
    with simulator(serial="ABC-7") as sim:
        with pyzk(sim) as zk:
            their_time, their_serial = zk.get_time(), zk.get_serialnumber()
        driver = driver_for(sim)
        driver.open()
        info = driver.info()
        driver.close()
    assert info.serial == their_serial == "ABC-7"
    assert info.clock is not None and abs(info.clock - their_time) <= timedelta(seconds=2)
